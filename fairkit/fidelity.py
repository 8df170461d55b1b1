"""Fidelity and privacy of synthetic images, per (group x finding) cell.

FairGen (2026) fills rare cells with generated images; a cell is only filled if its images look
like that cell's real images (FID, KID), show the intended group and finding (the rater's
classifiers agree), and are not copies of training images (nearest neighbours). All feature
distances are taken in the space of ``fairkit.rater.Features``, a classifier trained on the real
cohort, never an ImageNet Inception network (nothing is downloaded, and it knows these images).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from fairkit import seeds
from fairkit.data import Cohort
from fairkit.rater import COMPONENTS, Features, Rater, embed, nearest_neighbours


class _Given(nn.Module):
    """Passes features computed once through to torchmetrics (which calls its extractor)."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """The features themselves."""
        return features


def _cell_keys(cohort: Cohort, by: list[str], name: str) -> pd.DataFrame:
    """The ``by`` columns of a cohort as text (cells match across cohorts by their values)."""
    absent = [c for c in by if c not in cohort.meta]
    if absent:
        raise KeyError(f"{name} cohort: metadata lacks {absent}; found {list(cohort.meta.columns)}")
    return cohort.meta[list(by)].astype(str)


def _cells(keys: pd.DataFrame) -> list[tuple[str, ...]]:
    """The distinct value combinations of ``keys``, sorted."""
    return sorted(set(keys.itertuples(index=False, name=None)))


def _in_cell(keys: pd.DataFrame, cell: tuple[str, ...]) -> np.ndarray:
    return (keys == pd.Series(cell, index=keys.columns)).all(axis=1).to_numpy()


def fid_kid(
    real: np.ndarray, synthetic: np.ndarray, *, kid_subset: int, seed: int
) -> tuple[float, float, float]:
    """FID, KID and KID's standard deviation over subsets between two sets of feature vectors.

    torchmetrics' implementations, fed features computed once (its extractor is a pass-through).
    KID's 100 random subsets are drawn from a generator seeded by ``seed``.
    """
    d = real.shape[1]
    fid = FrechetInceptionDistance(feature=_Given(d))
    fid.update(torch.from_numpy(real), real=True)
    fid.update(torch.from_numpy(synthetic), real=False)
    subset = min(kid_subset, len(real), len(synthetic))
    with warnings.catch_warnings():  # that KID keeps every feature in memory: so it does
        warnings.simplefilter("ignore", UserWarning)
        kid = KernelInceptionDistance(feature=_Given(d), subset_size=subset)
    kid.update(torch.from_numpy(real), real=True)
    kid.update(torch.from_numpy(synthetic), real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        kid_mean, kid_std = kid.compute()
    return float(fid.compute()), float(kid_mean), float(kid_std)


def cell_fidelity(
    features: Features,
    real: Cohort,
    synthetic: Cohort,
    *,
    by: list[str],
    kid_subset: int = 50,
    seed: int = 0,
) -> pd.DataFrame:
    """FID and KID of the synthetic images of each cell against the real images of that cell.

    FID (Heusel et al. 2017) fits a Gaussian to each set's features; it is biased upwards in
    small samples (Chong and Forsyth 2020: the bias falls like 1/n and depends on the generator),
    and its covariances are singular with fewer images than features. Compare FIDs only at equal
    cell sizes, or against a real-versus-real FID at the same sizes. KID (Binkowski et al. 2018)
    is an unbiased estimate of a kernel distance (it can be slightly negative), with its standard
    deviation over random subsets of ``min(kid_subset, n_real, n_synthetic)`` images.

    Args:
        features: the feature extractor (each image goes through it once).
        real: real images with the ``by`` columns.
        synthetic: generated images with the ``by`` columns (the values they were made for).
        by: the columns that define a cell, e.g. ``["skin_group", "finding"]``.
        kid_subset: the largest KID subset.
        seed: seeds KID's subsets (stream ``kid`` and the cell's values).

    Returns:
        One row per cell present in ``synthetic``: the ``by`` values, ``n_real``,
        ``n_synthetic``, ``fid``, ``kid`` and ``kid_std``; NaN where a side has fewer than two
        images.
    """
    if real.images.shape[1:] != synthetic.images.shape[1:]:
        raise ValueError(
            f"real images are {real.images.shape[1:]} but synthetic ones {synthetic.images.shape[1:]}"
        )
    real_keys, synthetic_keys = _cell_keys(real, by, "real"), _cell_keys(synthetic, by, "synthetic")
    real_features = embed(features, real.images)
    synthetic_features = embed(features, synthetic.images)
    rows = []
    for cell in _cells(synthetic_keys):
        a = real_features[_in_cell(real_keys, cell)]
        b = synthetic_features[_in_cell(synthetic_keys, cell)]
        fid = kid = kid_std = np.nan
        if len(a) >= 2 and len(b) >= 2:
            fid, kid, kid_std = fid_kid(
                a, b, kid_subset=kid_subset, seed=seeds.stream(seed, "kid", *cell)
            )
        rows.append({**dict(zip(by, cell, strict=True)), "n_real": len(a),
                     "n_synthetic": len(b), "fid": fid, "kid": kid, "kid_std": kid_std})  # fmt: skip
    return pd.DataFrame(rows, columns=[*by, "n_real", "n_synthetic", "fid", "kid", "kid_std"])


def attribute_agreement(rater: Rater, synthetic: Cohort, *, by: list[str]) -> pd.DataFrame:
    """Per cell, how often the rater's classifiers see what the images were generated for.

    Args:
        rater: its group and pathology classifiers judge (validate them: ``rater_validity``).
        synthetic: generated images; metadata with ``finding``, the rater's attribute and ``by``.
        by: the columns that define a cell.

    Returns:
        One row per cell: the ``by`` values, ``group_agreement`` and ``pathology_agreement``
        (the share of images whose classifier's top class is the intended one), ``realism``
        (the mean of ``Rater.realism``: how close the images lie to real ones) and ``n``.
    """
    keys = _cell_keys(synthetic, by, "synthetic")
    intended, probs = rater.intended(synthetic.meta), rater.probabilities(synthetic.images)
    hit = {k: (probs[k].argmax(1) == intended[k]).astype(float) for k in COMPONENTS}
    hits = pd.DataFrame({"group_agreement": hit["group"], "pathology_agreement": hit["pathology"],
                         "realism": rater.realism(synthetic.images)})  # fmt: skip
    table = pd.concat([keys, hits], axis=1).groupby(list(by), sort=True)
    return table.mean().join(table.size().rename("n")).reset_index()


@dataclass
class Privacy:
    """Each synthetic image's nearest training image, in feature and pixel space.

    The reference is held-out real images: they are not copies, so about 1% of them lie at or
    below the thresholds (1st percentile of their distances to the training set). A generator
    that memorises puts more than that share of its images there.

    Attributes:
        table: per synthetic image (``synthetic``), its nearest training image and distance in
            feature space (``nearest_feature``, ``distance_feature``) and pixel space
            (``nearest_pixel``, ``distance_pixel``: L2 on [0, 1] pixels).
        reference: the same for each test image (``test``).
        threshold_feature: 1st percentile of the test images' feature distances.
        threshold_pixel: 1st percentile of their pixel distances.
        below_feature: the share of synthetic images at or below ``threshold_feature``.
        below_pixel: the share at or below ``threshold_pixel``.
    """

    table: pd.DataFrame
    reference: pd.DataFrame
    threshold_feature: float
    threshold_pixel: float
    below_feature: float
    below_pixel: float

    def summary(self) -> pd.DataFrame:
        """One row per space: threshold, the synthetic share at or below it, and the test's."""
        return pd.DataFrame(
            [
                {
                    "space": space,
                    "threshold": threshold,
                    "synthetic_below": below,
                    "test_below": float((self.reference[f"distance_{space}"] <= threshold).mean()),
                    "n_synthetic": len(self.table),
                }
                for space, threshold, below in (
                    ("feature", self.threshold_feature, self.below_feature),
                    ("pixel", self.threshold_pixel, self.below_pixel),
                )
            ]
        )

    def closest_pairs(self, k: int) -> pd.DataFrame:
        """The ``k`` synthetic images nearest a training image in pixels, nearest first.

        Show each beside its ``nearest_pixel`` training image to judge copying by eye.
        """
        return (
            self.table.sort_values("distance_pixel", kind="stable").head(k).reset_index(drop=True)
        )


def _nearest_table(
    features: Features, images: np.ndarray, train: np.ndarray, train_features: np.ndarray, name: str
) -> pd.DataFrame:
    by_feature = nearest_neighbours(embed(features, images), train_features)
    by_pixel = nearest_neighbours(images, train)
    return pd.DataFrame(
        {
            name: np.arange(len(images)),
            "nearest_feature": by_feature[0],
            "distance_feature": by_feature[1],
            "nearest_pixel": by_pixel[0],
            "distance_pixel": by_pixel[1],
        }
    )


def nearest_training(
    features: Features, synthetic: np.ndarray, *, train: np.ndarray, test: np.ndarray
) -> Privacy:
    """Whether synthetic images copy training images, measured against real test images.

    Args:
        features: the feature extractor.
        synthetic: generated uint8 images (N, C, H, W).
        train: the real images the generator was trained on.
        test: real images it was not trained on (the reference of a non-copy).

    Returns:
        The nearest-neighbour tables, the thresholds and the shares below them.
    """
    shapes = {"synthetic": synthetic.shape[1:], "train": train.shape[1:], "test": test.shape[1:]}
    if len(set(shapes.values())) > 1 or any(a.dtype != np.uint8 for a in (synthetic, train, test)):
        raise ValueError(
            f"synthetic, train and test must be uint8 images of one shape; got {shapes}"
        )
    if len(test) == 0:
        raise ValueError("nearest_training needs test images to set the thresholds; got none")
    train_features = embed(features, train)
    table = _nearest_table(features, synthetic, train, train_features, "synthetic")
    reference = _nearest_table(features, test, train, train_features, "test")
    thresholds = {
        s: float(np.percentile(reference[f"distance_{s}"], 1)) for s in ("feature", "pixel")
    }
    return Privacy(
        table=table,
        reference=reference,
        threshold_feature=thresholds["feature"],
        threshold_pixel=thresholds["pixel"],
        below_feature=float((table["distance_feature"] <= thresholds["feature"]).mean()),
        below_pixel=float((table["distance_pixel"] <= thresholds["pixel"]).mean()),
    )
