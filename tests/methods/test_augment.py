import numpy as np
import pytest

from fairkit import methods
from fairkit.config import settings
from fairkit.data import Cohort, synth
from fairkit.experiment import Experiment
from fairkit.methods import Augment, erm


@pytest.fixture(scope="module")
def scenario():
    """A smoke-size skin experiment (skin group audited), the dark group under-represented."""
    return Experiment("skin", settings("smoke"), seed=1, device="cpu").scenario("under", 0.3)


def _extra(n=40, *, modality="skin", image_size=16) -> Cohort:
    """Extra dark-skin images with only the columns a synthetic cohort has."""
    cohort = synth.generate(modality, n, seed=7, image_size=image_size)
    binary = Experiment(modality, settings("smoke"), seed=1, device="cpu").binary(cohort)
    meta = binary.meta[["label", "patient_id"]].assign(
        skin_group="dark",
        finding=[binary.classes[k] for k in binary.labels],
        synthetic=True,
        split="synthetic",
    )
    return Cohort(binary.images, meta, binary.modality, binary.classes)


@pytest.fixture(scope="module")
def extra_folder(tmp_path_factory):
    return str(_extra().save(tmp_path_factory.mktemp("extra") / "cohort"))


def test_augment_trains_on_the_real_images_then_the_extra_ones(scenario, extra_folder, monkeypatch):
    seen = []

    def spy(model, train, **kwargs):
        seen.append(train)
        return fit(model, train, **kwargs)

    fit = erm.fit
    monkeypatch.setattr(erm, "fit", spy)
    method = methods.get("augment", extra=extra_folder)
    out = method(scenario)
    real, extra = scenario.train, Cohort.load(extra_folder)
    (trained_on,) = seen
    n = len(real)
    assert len(trained_on) == n + len(extra) == n + 40
    np.testing.assert_array_equal(trained_on.images[:n], real.images)
    np.testing.assert_array_equal(trained_on.images[n:], extra.images)
    np.testing.assert_array_equal(trained_on.labels, np.r_[real.labels, extra.labels])
    meta = trained_on.meta
    assert list(meta.columns) == [*real.meta.columns, "synthetic"]  # "finding" dropped
    assert (meta["synthetic"] == [False] * n + [True] * 40).all()
    assert (meta["skin_group"][n:] == "dark").all() and meta["age"][n:].isna().all()
    assert meta["age"][:n].equals(real.meta["age"])  # the real rows as they were
    assert out.method == "augment" and len(out.test) == len(scenario.test)
    erm.ERM()(scenario)
    assert len(seen[-1]) == n  # ERM itself still trains on the real images only


def test_augment_is_a_hashable_method_setting(extra_folder):
    method = methods.get("augment", extra=extra_folder)
    assert isinstance(method, Augment) and method == Augment(extra=extra_folder)
    assert hash(method) == hash(Augment(extra=extra_folder))
    assert method != Augment(name="oracle", extra=extra_folder)
    with pytest.raises(TypeError, match="extra"):
        methods.get("augment")


def test_augment_refuses_a_foreign_extra_cohort(scenario, tmp_path):
    good = _extra(8)
    foreign = {
        "modality": _extra(8, modality="cxr"),
        "classes": Cohort(good.images, good.meta, "skin", ("healthy", "ill")),
        "image shape": _extra(8, image_size=32),
    }
    for what, cohort in foreign.items():
        method = Augment(extra=str(cohort.save(tmp_path / what.replace(" ", "_"))))
        with pytest.raises(ValueError, match=f"extra cohort's {what}"):
            method.training_cohort(scenario)
    no_group = Cohort(good.images, good.meta.drop(columns="skin_group"), "skin", good.classes)
    with pytest.raises(KeyError, match="needs the audited attribute 'skin_group'"):
        Augment(extra=str(no_group.save(tmp_path / "no_group"))).training_cohort(scenario)
    other = Cohort(good.images, good.meta.assign(skin_group="medium"), "skin", good.classes)
    with pytest.raises(ValueError, match=r"skin_group values \['medium'\] are not in"):
        Augment(extra=str(other.save(tmp_path / "other"))).training_cohort(scenario)
