import numpy as np
import pandas as pd
import pytest
import torch
from torchmetrics.image.fid import FrechetInceptionDistance

from fairkit.data import Cohort
from fairkit.fidelity import attribute_agreement, cell_fidelity, nearest_training
from fairkit.models.classifier import backbone
from fairkit.rater import Features, Rater
from tests.test_rater import Constant

BY = ["skin_group", "finding"]


def noise_like(cohort: Cohort, seed: int = 0) -> Cohort:
    """Uniform noise images with the cohort's metadata (the same cells)."""
    images = np.random.default_rng(seed).integers(0, 256, cohort.images.shape, dtype=np.uint8)
    return Cohort(images, cohort.meta, cohort.modality, cohort.classes)


@pytest.fixture(scope="module")
def features():
    return Features(
        backbone("small_cnn", in_channels=3, n_classes=2, image_size=16, width=4, seed=0)
    )


@pytest.fixture(scope="module")
def real(skin_findings):
    return skin_findings(120, seed=0)


def test_fid_of_a_set_with_itself_is_near_zero_and_larger_against_noise(features, real):
    itself = cell_fidelity(features, real, real, by=BY).set_index(BY)
    noise = cell_fidelity(features, real, noise_like(real), by=BY).set_index(BY)
    assert len(itself) == 4 and (itself["n_real"] == itself["n_synthetic"]).all()
    assert (itself["fid"].abs() < 1e-3).all()
    assert (noise["fid"] > 100 * itself["fid"].abs().max() + 1e-3).all()
    assert (noise["kid"] > itself["kid"] + 3 * itself["kid_std"]).all()


def test_fid_equals_torchmetrics_with_the_extractor_on_uint8_images(features, real):
    cell = (real.meta["skin_group"] == "dark") & (real.meta["finding"] == "benign")
    ours = cell_fidelity(features, real.subset(cell), noise_like(real).subset(cell), by=BY)
    reference = FrechetInceptionDistance(feature=features, input_img_size=(3, 16, 16))
    reference.update(torch.from_numpy(real.images[cell.to_numpy()]), real=True)
    reference.update(torch.from_numpy(noise_like(real).images[cell.to_numpy()]), real=False)
    assert ours["fid"].item() == pytest.approx(reference.compute().item(), rel=1e-4)


def test_cells_come_from_the_synthetic_set_and_small_ones_are_nan(features, real):
    light_benign = np.flatnonzero(
        (real.meta["skin_group"] == "light") & (real.meta["finding"] == "benign")
    )
    dark = np.flatnonzero(real.meta["skin_group"] == "dark")
    synthetic = real.subset(np.r_[light_benign[:1], dark])
    table = cell_fidelity(features, real, synthetic, by=BY).set_index(BY)
    assert set(table.index) == {("light", "benign"), ("dark", "benign"), ("dark", "malignant")}
    single = table.loc[("light", "benign")]
    assert single["n_synthetic"] == 1 and np.isnan(single[["fid", "kid", "kid_std"]]).all()
    assert table.drop(index=("light", "benign"))["fid"].notna().all()


def test_kid_is_reproducible_for_a_seed(features, real):
    noise = noise_like(real)
    a = cell_fidelity(features, real, noise, by=BY, kid_subset=5, seed=3)
    b = cell_fidelity(features, real, noise, by=BY, kid_subset=5, seed=3)
    pd.testing.assert_frame_equal(a, b)


def test_attribute_agreement_counts_the_intended_classes(features, real):
    rater = Rater(
        pathology_model=Constant(0),  # always "benign"
        group_model=Constant(1),  # always "light"
        attribute="skin_group",
        findings=("benign", "malignant"),
        groups=("dark", "light"),
        features=features,
        train_features=np.zeros((2, features.num_features), np.float32),
        scale=1.0,
    )
    table = attribute_agreement(rater, real, by=BY).set_index(BY)
    assert table["group_agreement"].to_dict() == {
        ("dark", "benign"): 0.0,
        ("dark", "malignant"): 0.0,
        ("light", "benign"): 1.0,
        ("light", "malignant"): 1.0,
    }
    assert (table["pathology_agreement"] == (table.index.get_level_values(1) == "benign")).all()
    assert table["n"].to_dict() == real.meta.groupby(BY).size().to_dict()
    realism = (
        pd.Series(rater.realism(real.images))
        .groupby(real.meta[BY].apply(tuple, axis=1).to_numpy())
        .mean()
    )
    assert table["realism"].to_dict() == pytest.approx(realism.to_dict())


def test_nearest_training_finds_exact_copies(features, real):
    train, test = real.images[:80], real.images[80:]
    noise = noise_like(real).images[:4]
    privacy = nearest_training(features, np.r_[noise, train[[5, 60]]], train=train, test=test)
    copies = privacy.table.iloc[4:]
    assert copies["nearest_pixel"].tolist() == [5, 60] and (copies["distance_pixel"] == 0).all()
    assert copies["nearest_feature"].tolist() == [5, 60]
    assert (copies["distance_feature"] < 1e-4).all()
    assert 0 < privacy.threshold_pixel and privacy.below_pixel == pytest.approx(2 / 6)
    assert privacy.below_feature == pytest.approx(2 / 6)
    assert privacy.closest_pairs(2)[["synthetic", "nearest_pixel"]].values.tolist() == [
        [4, 5],
        [5, 60],
    ]
    assert len(privacy.reference) == len(test)


def test_images_far_from_training_are_never_below_the_threshold(features, real):
    train, test = real.images[:80], real.images[80:]
    privacy = nearest_training(features, noise_like(real).images[:10], train=train, test=test)
    assert privacy.below_pixel == 0 and privacy.below_feature == 0
    assert (privacy.table["distance_pixel"] > privacy.threshold_pixel).all()


def test_nearest_training_refuses_images_of_another_shape(features, real):
    with pytest.raises(ValueError, match="one shape"):
        nearest_training(
            features, real.images[:2, :1], train=real.images[:10], test=real.images[10:20]
        )
