import numpy as np
import pandas as pd
import pytest
import torch

from fairkit.models import diffusion
from fairkit.synthesis import missing_cells, synthesise

CLASSES = ("benign", "malignant")


def _meta():
    counts = {("dark", "melanoma"): 4, ("dark", "nevus"): 25, ("light", "melanoma"): 36,
              ("light", "nevus"): 100, ("medium", "nevus"): 9}  # fmt: skip
    rows = [{"skin_group": g, "diagnosis": d} for (g, d), n in counts.items() for _ in range(n)]
    return pd.DataFrame(rows)


def test_inverse_frequency_fills_every_cell_up_to_the_largest():
    cells = missing_cells(_meta(), by=("skin_group", "diagnosis"), rule="inverse")
    assert len(cells) == 6  # every combination, the empty (medium, melanoma) cell included
    assert ((cells["real"] + cells["synthesise"]) == 100).all()
    empty = cells.set_index(["skin_group", "diagnosis"]).loc[("medium", "melanoma")]
    assert empty["real"] == 0 and empty["synthesise"] == 100


def test_square_root_inverse_frequency_fills_each_cell_to_the_geometric_mean_with_the_largest():
    cells = missing_cells(_meta(), by=("skin_group", "diagnosis")).set_index(
        ["skin_group", "diagnosis"]
    )
    expected = {("dark", "melanoma"): 20, ("dark", "nevus"): 50, ("light", "melanoma"): 60,
                ("light", "nevus"): 100, ("medium", "nevus"): 30, ("medium", "melanoma"): 0}  # fmt: skip
    assert cells["target"].to_dict() == expected
    assert (cells["real"] + cells["synthesise"] == cells["target"]).all()
    assert cells.loc[("light", "nevus"), "synthesise"] == 0 and (cells["synthesise"] >= 0).all()
    # the filled set is what drawing real cells with weight n^(-1/2) would give: shares ~ sqrt(n)
    seen = cells[cells["real"] > 0]
    shares = seen["target"] / seen["target"].sum()
    np.testing.assert_allclose(shares, np.sqrt(seen["real"]) / np.sqrt(seen["real"]).sum())


def test_bad_requests_are_refused():
    with pytest.raises(ValueError, match="rule must be one of"):
        missing_cells(_meta(), by=("skin_group",), rule="sqrt")
    with pytest.raises(KeyError, match=r"missing \['sex'\]"):
        missing_cells(_meta(), by=("skin_group", "sex"))
    with pytest.raises(ValueError, match="empty"):
        missing_cells(_meta().iloc[:0], by=("skin_group",))


@pytest.fixture(scope="module")
def unet():
    """A tiny untrained UNet (8 px, widths 8 and 16) conditioned on skin group, finding and sex."""
    torch.manual_seed(0)
    vocabulary = {"skin_group": ("dark", "light"), "finding": CLASSES, "sex": ("F", "M")}
    return diffusion.ConditionalUNet(
        vocabulary=vocabulary, image_size=8, channels=3, block_out_channels=(8, 16)
    ).eval()


def _plan(counts=(3, 0, 2, 1)):
    cells = [("dark", "benign"), ("dark", "malignant"), ("light", "benign"), ("light", "malignant")]
    return pd.DataFrame(
        [{"skin_group": g, "finding": f, "real": 10, "synthesise": n}
         for (g, f), n in zip(cells, counts, strict=True)]
    )  # fmt: skip


def _make(unet, plan, seed=0, **kwargs):
    return synthesise(unet, plan, label="finding", classes=CLASSES, modality="skin", seed=seed,
                      steps=2, progress=False, **kwargs)  # fmt: skip


def test_synthesis_makes_the_plans_count_of_each_cell_with_its_metadata(unet):
    made = _make(unet, _plan(), batch_size=4)  # calls of 2 guided images: batches cross cells
    assert made.images.shape == (6, 3, 8, 8) and made.images.dtype == np.uint8
    assert made.modality == "skin" and made.classes == CLASSES
    counts = made.meta.groupby(["skin_group", "finding"]).size().to_dict()
    assert counts == {("dark", "benign"): 3, ("light", "benign"): 2, ("light", "malignant"): 1}
    expected = made.meta["finding"].map({"benign": 0, "malignant": 1})
    np.testing.assert_array_equal(made.labels, expected)
    assert made.meta["synthetic"].all() and (made.meta["split"] == "synthetic").all()
    assert made.meta["patient_id"].is_unique and made.meta["patient_id"][5] == "synthetic-000005"
    assert not {"real", "synthesise"} & set(made.meta.columns)


def test_synthesis_conditions_on_the_plans_columns_and_nulls_the_others(unet, monkeypatch):
    seen = {}

    def fake_sample(model, codes, **kwargs):
        seen["codes"] = codes
        return torch.zeros(len(codes), 3, 8, 8)

    monkeypatch.setattr(diffusion, "sample", fake_sample)
    _make(unet, _plan((1, 1, 0, 2)))  # no "sex" column: its null code, 2
    expected = [[0, 0, 2], [0, 1, 2], [1, 1, 2], [1, 1, 2]]  # skin_group, finding, sex
    assert seen["codes"].tolist() == expected


@pytest.mark.parametrize("sampler", ["dpmsolver", "dpmsolver_sde", "ddpm"])  # the last two: noise
def test_synthesis_is_reproducible_with_a_seed_and_differs_with_another(unet, sampler):
    first, again, other = (_make(unet, _plan(), seed=s, sampler=sampler) for s in (0, 0, 1))
    np.testing.assert_array_equal(first.images, again.images)
    pd.testing.assert_frame_equal(first.meta, again.meta)
    assert (first.images != other.images).mean() > 0.5


def test_a_plan_of_no_images_gives_an_empty_cohort_of_the_right_shape(unet):
    made = _make(unet, _plan((0, 0, 0, 0)))
    assert made.images.shape == (0, 3, 8, 8) and len(made.meta) == 0
    assert {"skin_group", "finding", "label", "synthetic", "patient_id"} <= set(made.meta)


def test_bad_plans_are_refused(unet):
    with pytest.raises(KeyError, match="needs a 'synthesise' column"):
        _make(unet, _plan().drop(columns="synthesise"))
    with pytest.raises(ValueError, match=r"'synthesise' must be >= 0; got \[-1\]"):
        _make(unet, _plan((1, -1, 0, 0)))
    with pytest.raises(ValueError, match="must hold integers"):
        _make(unet, _plan((1.5, 0, 0, 0)))
    with pytest.raises(ValueError, match=r"finding values \['melanoma'\] are not among"):
        _make(unet, _plan().replace({"finding": {"malignant": "melanoma"}}))
    with pytest.raises(KeyError, match="no 'finding' column"):
        _make(unet, _plan().drop(columns="finding"))
    with pytest.raises(ValueError, match="not conditioned on 'diagnosis'"):
        synthesise(unet, _plan().rename(columns={"finding": "diagnosis"}), label="diagnosis",
                   classes=CLASSES, modality="skin", seed=0, steps=2, progress=False)  # fmt: skip
