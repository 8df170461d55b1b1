import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fairkit.data import Cohort, synth
from fairkit.data import bias as B
from fairkit.data.scm import SCM, Mechanism

MODALITIES = ["skin", "cxr", "mri"]


@pytest.mark.parametrize("modality", MODALITIES)
def test_same_seed_same_images_other_seed_other_images(modality):
    a = synth.generate(modality, 40, seed=3, image_size=16)
    b = synth.generate(modality, 40, seed=3, image_size=16)
    c = synth.generate(modality, 40, seed=4, image_size=16)
    assert np.array_equal(a.images, b.images)
    assert not np.array_equal(a.images, c.images)
    channels = 3 if modality == "skin" else 1
    assert a.images.shape == (40, channels, 16, 16) and a.images.dtype == np.uint8


@settings(max_examples=6, deadline=None)
@given(modality=st.sampled_from(MODALITIES), seed=st.integers(0, 10_000))
def test_empty_intervention_is_the_identity(modality, seed):
    cohort = synth.generate(modality, 24, seed=seed, image_size=16)
    again = synth.counterfactual(cohort, {})
    assert np.array_equal(again.images, cohort.images)
    assert again.meta.equals(cohort.meta)


@pytest.mark.parametrize(
    ("modality", "do"),
    [
        ("skin", {"skin_type": "VI"}),
        ("skin", {"sex": "M"}),
        ("skin", {"diagnosis": "melanoma"}),
        ("cxr", {"sex": "F"}),
        ("cxr", {"age": 85}),
        ("mri", {"age": 30}),
        ("mri", {"diagnosis": "dementia"}),
    ],
)
def test_intervention_changes_only_the_variable_and_its_descendants(modality, do):
    cohort = synth.generate(modality, 300, seed=1, image_size=16)
    scm = synth.model(modality)
    cf = synth.counterfactual(cohort, do)
    affected = set(do) | scm.descendants(do)
    for name in scm.variables:
        same = cf.meta[name].to_numpy() == cohort.meta[name].to_numpy()
        if name not in affected:
            assert same.all(), f"{name} is not downstream of {do} but changed"
    for name in do:
        assert (cf.meta[name] == do[name]).all()
    assert any((cf.meta[v] != cohort.meta[v]).any() for v in affected)
    for column in scm.noise_columns:
        assert np.array_equal(cf.meta[column], cohort.meta[column])
    affected = sorted(affected)
    moved = (cf.meta[affected].to_numpy() != cohort.meta[affected].to_numpy()).any(axis=1)
    differs = (cf.images != cohort.images).any(axis=(1, 2, 3))
    assert not differs[~moved].any(), "an image changed although none of its variables did"
    assert differs.any()


def test_derived_variables_and_unknown_values_are_refused():
    cohort = synth.generate("skin", 8, seed=0, image_size=16)
    with pytest.raises(ValueError, match="derived from skin_type"):
        synth.counterfactual(cohort, {"skin_group": "dark"})
    with pytest.raises(ValueError, match="allowed values"):
        synth.counterfactual(cohort, {"skin_type": "VII"})
    with pytest.raises(KeyError, match="no variable"):
        synth.counterfactual(cohort, {"colour": 1})


def test_bad_arguments_get_clear_errors():
    with pytest.raises(ValueError, match="unknown modality"):
        synth.generate("ct", 10)
    with pytest.raises(ValueError, match="image_size"):
        synth.generate("skin", 10, image_size=50)
    with pytest.raises(TypeError, match="unknown bias"):
        synth.generate("skin", 10, image_size=16, undersample=0.1)
    with pytest.raises(ValueError, match="fraction"):
        synth.generate(
            "skin", 10, image_size=16, under={"attribute": "sex", "group": "F", "fraction": 2}
        )


@pytest.mark.parametrize(
    ("modality", "under", "spurious"),
    [
        ("skin", B.UnderRepresent("skin_group", "dark", 0.1), B.Spurious("ruler", "melanoma", 0.7)),
        ("skin", B.UnderRepresent("skin_group", "dark", 0.05, "melanoma"), None),
        (
            "cxr",
            B.UnderRepresent("race", "Black", 0.08),
            B.Spurious("support_device", "effusion", 0.9),
        ),
        (
            "mri",
            B.UnderRepresent("sex", "F", 0.2),
            B.Spurious("field_strength", "dementia", 0.6, "3T"),
        ),
    ],
)
def test_requested_bias_strengths_are_met_within_two_points(modality, under, spurious):
    noise = B.LabelNoise("sex", {"F": 0.15, "M": 0.02})
    table = synth.sample_table(
        modality, 4000, seed=5, under=under, spurious=spurious, label_noise=noise
    )
    measured = B.measured_strengths(table, under=under, spurious=spurious, label_noise=noise)
    assert measured["under_fraction"] == pytest.approx(under.fraction, abs=0.02)
    if spurious is not None:
        assert measured["spurious_strength"] == pytest.approx(spurious.strength, abs=0.02)
    assert measured["label_noise_F"] == pytest.approx(0.15, abs=0.02)
    assert measured["label_noise_M"] == pytest.approx(0.02, abs=0.02)
    flipped = table["label_flipped"].to_numpy()
    truth = table["diagnosis"].map({c: i for i, c in enumerate(synth.model(modality).classes)})
    assert ((table["label"] != truth).to_numpy() == flipped).all()


def test_splits_have_a_balanced_unbiased_test_set_and_an_external_site():
    splits = synth.make_splits(
        "skin",
        seed=0,
        image_size=16,
        n_train=400,
        n_val=100,
        n_test=400,
        under={"attribute": "skin_group", "group": "dark", "fraction": 0.1},
        spurious={"artifact": "ruler", "diagnosis": "melanoma", "strength": 0.8},
    )
    assert splits["train"].meta["skin_group"].eq("dark").mean() == pytest.approx(0.1, abs=0.02)
    test = splits["test"].meta
    assert test["skin_group"].eq("dark").mean() == pytest.approx(0.5, abs=0.02)
    ruler = test["ruler"].astype(bool)
    melanoma = test["diagnosis"] == "melanoma"
    assert abs(ruler[melanoma].mean() - ruler[~melanoma].mean()) < 0.03  # quota rounding
    assert set(splits["external"].meta["site"]) == {"X"}
    assert not set(splits["train"].meta["patient_id"]) & set(test["patient_id"])


def test_shards_are_written_resumed_and_read_back_lazily(tmp_path, monkeypatch):
    path = tmp_path / "big"
    calls = []
    original = synth.render_in_batches

    def failing_after_one_shard(render, table, size):
        calls.append(len(table))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(render, table, size)

    monkeypatch.setattr(synth, "render_in_batches", failing_after_one_shard)
    with pytest.raises(KeyboardInterrupt):
        synth.write_shards(path, "mri", 100, seed=2, image_size=16, shard_size=40)
    assert not path.exists()
    monkeypatch.setattr(synth, "render_in_batches", original)
    synth.write_shards(path, "mri", 100, seed=2, image_size=16, shard_size=40)
    cohort = Cohort.load(path)
    assert isinstance(cohort.images, np.memmap)
    assert np.array_equal(cohort.images, synth.generate("mri", 100, seed=2, image_size=16).images)


@pytest.mark.parametrize("n", [0, -5, 2.5, True, "10", None])
def test_a_cohort_size_other_than_a_whole_number_of_at_least_one_is_refused(n):
    message = rf"n must be a whole number >= 1; got {re.escape(repr(n))}"
    with pytest.raises(ValueError, match=message):
        synth.generate("skin", n, image_size=16)
    with pytest.raises(ValueError, match=message):
        synth.write_shards("nowhere", "skin", n, image_size=16)


def test_every_split_size_is_checked_before_any_split_is_generated(monkeypatch):
    monkeypatch.setattr(synth, "generate", lambda *args, **kwargs: pytest.fail("generated"))
    with pytest.raises(ValueError, match=r"n_test must be a whole number >= 1; got 0"):
        synth.make_splits("skin", seed=0, image_size=16, n_train=10, n_val=10, n_test=0)


def test_a_shard_size_below_one_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"shard_size must be a whole number >= 1; got 0"):
        synth.write_shards(tmp_path / "big", "mri", 10, image_size=16, shard_size=0)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("size", [16.0, True, "16", 50])
def test_an_image_size_that_is_not_one_of_the_sizes_is_refused(size):
    with pytest.raises(ValueError, match=r"image_size must be one of \(16, 32, 64, 128\)"):
        synth.generate("skin", 4, image_size=size)


@pytest.mark.parametrize("subtlety", [5, -0.1, 1.0, float("nan"), True, "0.5"])
def test_a_subtlety_outside_0_to_1_is_refused(subtlety):
    message = rf"subtlety must be a number in \[0, 1\); got {re.escape(repr(subtlety))}"
    with pytest.raises(ValueError, match=message):
        synth.model("skin", subtlety)
    with pytest.raises(ValueError, match=message):
        synth.generate("cxr", 4, image_size=16, subtlety=subtlety)


@pytest.mark.parametrize("age", [float("nan"), float("inf"), "old", True, [30.0, None]])
def test_an_intervention_on_a_continuous_variable_must_be_a_finite_number(age):
    cohort = synth.generate("skin", 2, seed=0, image_size=16)
    with pytest.raises(ValueError, match=r"do\(age=.*\): allowed values are finite numbers"):
        synth.counterfactual(cohort, {"age": age})


def test_an_intervention_must_be_a_mapping():
    cohort = synth.generate("skin", 2, seed=0, image_size=16)
    with pytest.raises(TypeError, match=r"do must be a mapping of variable to value; got None"):
        synth.counterfactual(cohort, None)


def _aged() -> SCM:
    """A one-variable SCM whose age, like the modalities', lives in [18, 90]."""
    age = Mechanism(
        "age", (), {"u_age": "uniform"}, lambda v: 18 + 72 * v["u_age"], "patient", bounds=(18, 90)
    )
    return SCM("toy", [age], render=lambda table, size: None, classes=("a",), channels=1)


@pytest.mark.parametrize("age", [-50, 17.9, 90.5, [30, 200]])
def test_an_intervention_outside_a_continuous_variables_range_is_refused(age):
    scm = _aged()
    noise = scm.sample_noise(2, seed=0)
    with pytest.raises(
        ValueError, match=r"do\(age=.*\): allowed values are finite numbers in \[18, 90\]"
    ):
        scm.solve(noise, do={"age": age})
    assert scm.solve(noise, do={"age": [18, 90]})["age"].tolist() == [18, 90]
    assert scm.mechanism("age").domain == "finite numbers in [18, 90]"


@pytest.mark.parametrize(
    ("modality", "low", "high"), [("skin", 18, 90), ("cxr", 18, 95), ("mri", 20, 90)]
)
def test_each_modalitys_age_is_bounded_where_its_mechanism_clips_it(modality, low, high):
    cohort = synth.generate(modality, 2, seed=0, image_size=16)
    with pytest.raises(
        ValueError,
        match=rf"do\(age=\[-50\]\): allowed values are finite numbers in \[{low}, {high}\]",
    ):
        synth.counterfactual(cohort, {"age": -50})
    assert (synth.counterfactual(cohort, {"age": high}).meta["age"] == high).all()


@pytest.mark.parametrize("value", [True, np.True_, 1.0])
def test_an_intervention_on_a_zero_one_variable_takes_only_its_integers(value):
    cohort = synth.generate("skin", 2, seed=0, image_size=16)
    with pytest.raises(ValueError, match=r"do\(ruler=.*\): allowed values are \(0, 1\)"):
        synth.counterfactual(cohort, {"ruler": value})
    assert (synth.counterfactual(cohort, {"ruler": 1}).meta["ruler"] == 1).all()
