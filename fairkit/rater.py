"""An expert-style rater of generated images, standing in for physicians (FairGen's judges).

FairGen (2026) aligns a conditional diffusion model with physicians' preferences between two
images generated for one condition (Diffusion-DPO). Without physicians, the rater below scores an
image by three things an expert looks at: does it show the finding it was generated for
(pathology classifier), does it show the intended group (group classifier), and does it look
like a real image (``realism``: closeness to the real training images in the pathology
classifier's feature space). Both classifiers are trained on real images and are validated on
held-out real images (``rater_validity``) before their scores are used. ``rate_pairs`` turns the
scores into the preference pairs of ``fairkit.data.preferences``, with a chosen agreement
between the simulated panel and the scores (physicians agree with each other on ~70-90% of
pairs).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import torch
from torch import nn

from fairkit import seeds
from fairkit.bootstrap import patient_weights
from fairkit.data import Cohort, as_tensor
from fairkit.data.preferences import PAIR_COLUMNS
from fairkit.models.classifier import stages
from fairkit.training.classifier import TrainConfig, fit_attribute

FINDING = "finding"
"""The metadata column of the binary task's class name (``cohort.classes[label]``)."""
SCORE_COLUMNS = ("pathology", "group", "realism", "score")
COMPONENTS = ("pathology", "group")


# --------------------------------------------------------------------------- features


class Features(nn.Module):
    """A trained classifier without its last linear layer: uint8 images to feature vectors.

    The feature space of FID, KID, the realism score and the privacy check, learned on the real
    cohort (an ImageNet Inception network knows nothing of 16-px lesions, and nothing is
    downloaded). The classifier is copied, so freezing it here leaves the original trainable.

    Attributes:
        num_features: length of a feature vector (torchmetrics reads it).
    """

    def __init__(self, classifier: nn.Module):
        super().__init__()
        *body, head = stages(copy.deepcopy(classifier))
        layers = list(head)
        if not layers or not isinstance(layers[-1], nn.Linear):
            raise ValueError(
                f"the classifier's last stage must end in nn.Linear; found {type(layers[-1]).__name__}"
            )
        self.net = nn.Sequential(*body, *layers[:-1])
        self.num_features = int(layers[-1].in_features)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> Features:
        """Stay in eval mode: batch-norm statistics are the trained ones, always."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Features (N, num_features) of uint8 images (N, C, H, W), scaled to [0, 1] as ``as_tensor``."""
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise TypeError(
                f"Features takes uint8 images (N, C, H, W); got {images.dtype} {tuple(images.shape)}"
            )
        x = images.to(_device(self)).float().div_(255)
        return self.net(x).flatten(1).float()


def embed(features: Features, images: np.ndarray, *, batch_size: int = 512) -> np.ndarray:
    """The feature vectors (N, d) of uint8 images (N, C, H, W), on the CPU as float32.

    Args:
        features: the feature extractor.
        images: uint8 images, in memory or memory-mapped (read one batch at a time).
        batch_size: images per forward pass.
    """
    out = [
        features(torch.from_numpy(np.array(images[i : i + batch_size], dtype=np.uint8))).cpu()
        for i in range(0, len(images), batch_size)
    ]
    if not out:
        return np.zeros((0, features.num_features), np.float32)
    return torch.cat(out).numpy()


def _device(model: nn.Module) -> torch.device:
    """Where the model's parameters are (the CPU for a model without any)."""
    parameter = next(model.parameters(), None)
    return torch.device("cpu") if parameter is None else parameter.device


def _rows(array: np.ndarray) -> torch.Tensor:
    """Rows to compare: uint8 images as [0, 1] floats, flattened; feature vectors as float32."""
    if array.dtype == np.uint8:
        return as_tensor(array).flatten(1)
    return torch.as_tensor(np.asarray(array, dtype=np.float32)).flatten(1)


def nearest_neighbours(
    queries: np.ndarray,
    reference: np.ndarray,
    *,
    exclude_self: bool = False,
    batch_size: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """Each query's nearest reference row and its Euclidean distance.

    uint8 images are compared as [0, 1] floats flattened (pixel space), anything else as float
    vectors. Blocks of ``torch.cdist`` keep the memory small; the distance to the chosen
    neighbour is then recomputed directly, so an exact copy is at distance 0 (cdist's matrix
    product form is off by ~1e-3 there).

    Args:
        queries: (M, ...) rows to look up.
        reference: (N, ...) rows to search.
        exclude_self: the queries are the reference; each row's own match is skipped.
        batch_size: rows per block on each side.

    Returns:
        The index into ``reference`` (M,) and the distance (M,) of each query's neighbour.
    """
    if len(reference) == 0 or (exclude_self and len(reference) < 2):
        raise ValueError(
            f"nearest_neighbours needs a reference to search; got {len(reference)} rows"
        )
    if queries.shape[1:] != reference.shape[1:]:
        raise ValueError(
            f"queries {queries.shape[1:]} and reference {reference.shape[1:]} differ in shape"
        )
    best = torch.full((len(queries),), float("inf"))
    index = torch.zeros(len(queries), dtype=torch.long)
    for i in range(0, len(queries), batch_size):
        q = _rows(queries[i : i + batch_size])
        for j in range(0, len(reference), batch_size):
            d = torch.cdist(q, _rows(reference[j : j + batch_size]))
            if exclude_self:
                rows = torch.arange(i, i + len(q))[:, None]
                d[rows == torch.arange(j, j + d.shape[1])[None]] = float("inf")
            value, where = d.min(1)
            better = value < best[i : i + len(q)]
            best[i : i + len(q)][better] = value[better]
            index[i : i + len(q)][better] = where[better] + j
    index = index.numpy()
    distance = np.concatenate(
        [
            (_rows(queries[i : i + batch_size]) - _rows(reference[index[i : i + batch_size]]))
            .norm(dim=1)
            .numpy()
            for i in range(0, len(queries), batch_size)
        ]
    )
    return index, distance.astype(np.float64)


# --------------------------------------------------------------------------- the rater


@dataclass
class Rater:
    """The expert-style rater: two classifiers of real images and a realism score.

    Attributes:
        pathology_model: classifier of the ``finding`` column, trained on real images.
        group_model: classifier of ``attribute`` (e.g. skin group), trained on real images.
        attribute: the audited attribute the group classifier reads.
        findings: the pathology classifier's classes, in its output order.
        groups: the group classifier's classes, in its output order.
        features: the pathology classifier without its last linear layer.
        train_features: the real training images' features (N, d), the realism reference.
        scale: median distance from a real training image to its nearest other one; the
            distance at which realism is exp(-1).
        scored: the classifiers whose probabilities enter the score (``validated`` drops
            those at chance on held-out real images); realism always does.
    """

    pathology_model: nn.Module = field(repr=False)
    group_model: nn.Module = field(repr=False)
    attribute: str
    findings: tuple[str, ...]
    groups: tuple[str, ...]
    features: Features = field(repr=False)
    train_features: np.ndarray = field(repr=False)
    scale: float
    scored: tuple[str, ...] = COMPONENTS

    def __post_init__(self):
        if not (np.isfinite(self.scale) and self.scale > 0):
            raise ValueError(
                f"realism scale must be a positive distance; got {self.scale} (are the real "
                "training images all copies of one another?)"
            )
        unknown = sorted(set(self.scored) - set(COMPONENTS))
        if unknown:
            raise ValueError(f"scored components must be among {COMPONENTS}; got {unknown}")

    def probabilities(self, images: np.ndarray, *, batch_size: int = 512) -> dict[str, np.ndarray]:
        """Both classifiers' class probabilities of uint8 images, by component name."""
        return {
            "pathology": _probabilities(self.pathology_model, images, batch_size=batch_size),
            "group": _probabilities(self.group_model, images, batch_size=batch_size),
        }

    def intended(self, conditions: pd.DataFrame) -> dict[str, np.ndarray]:
        """The class codes the images were generated for, by component (refusing unseen values)."""
        return {
            "pathology": _class_codes(conditions, FINDING, self.findings),
            "group": _class_codes(conditions, self.attribute, self.groups),
        }

    def realism(self, images: np.ndarray) -> np.ndarray:
        """exp(-d / scale), d the feature distance to the nearest real training image: in (0, 1]."""
        _, distance = nearest_neighbours(embed(self.features, images), self.train_features)
        return np.exp(-distance / self.scale)

    def score(self, images: np.ndarray, conditions: pd.DataFrame) -> pd.DataFrame:
        """Each image's three component scores and their mean (row i scores image i).

        Args:
            images: uint8 (N, C, H, W), generated images.
            conditions: one row per image with the ``finding`` and the ``attribute`` value it
                was generated for.

        Returns:
            Columns ``pathology`` (probability of the intended finding), ``group`` (probability
            of the intended group), ``realism`` and ``score``, the mean of the ``scored``
            components and realism; a component not scored is NaN (it cannot tell its classes).
        """
        if len(images) != len(conditions):
            raise ValueError(f"{len(images)} images but {len(conditions)} condition rows")
        codes, probs = self.intended(conditions), self.probabilities(images)
        rows = np.arange(len(images))
        table = pd.DataFrame(
            {k: probs[k][rows, codes[k]] if k in self.scored else np.nan for k in COMPONENTS},
            index=rows,
        ).assign(realism=self.realism(images))
        return table.assign(score=table[[*self.scored, "realism"]].mean(axis=1))


@torch.no_grad()
def _probabilities(model: nn.Module, images: np.ndarray, *, batch_size: int) -> np.ndarray:
    """Softmax outputs (N, classes) of a classifier on uint8 images, batch by batch."""
    model.eval()
    device = _device(model)
    out = [
        model(as_tensor(images[i : i + batch_size]).to(device)).float().softmax(-1).cpu()
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(out).numpy()


def _class_codes(table: pd.DataFrame, column: str, classes: tuple[str, ...]) -> np.ndarray:
    """The codes of ``table[column]`` among ``classes``; an error for a value never trained on."""
    if column not in table:
        raise KeyError(f"conditions need a {column!r} column; found {list(table.columns)}")
    values = table[column].astype(str)
    unknown = sorted(set(values) - set(classes))
    if unknown:
        raise ValueError(
            f"{column} values {unknown} were never seen by the rater's classifier, which knows "
            f"{list(classes)}"
        )
    return values.map({c: k for k, c in enumerate(classes)}).to_numpy().astype(np.int64)


def fit_rater(
    train: Cohort,
    val: Cohort,
    *,
    attribute: str,
    make_model: Callable[[int], nn.Module],
    config: TrainConfig,
    min_steps: int = 0,
) -> Rater:
    """Train the rater's two classifiers on real images and set its realism reference.

    Args:
        train: real training images; metadata with ``attribute`` and ``finding`` columns.
        val: real validation images (model selection), with the same columns.
        attribute: the audited attribute, e.g. ``skin_group``.
        make_model: ``make_model(n_classes)`` builds a fresh classifier.
        config: the training settings of both classifiers; its epochs are raised where they
            would give fewer than ``min_steps`` optimiser steps.
        min_steps: the fewest optimiser steps of each classifier (5 epochs of a thousand images
            are too few for a faint attribute: the classifier still predicts one class).

    Returns:
        The rater; validate it with ``rater_validity`` before trusting its scores.
    """
    for name, cohort in (("train", train), ("val", val)):
        absent = [c for c in (attribute, FINDING) if c not in cohort.meta]
        if absent:
            raise KeyError(
                f"{name} cohort: metadata lacks {absent}; the rater needs {attribute!r} and "
                f"{FINDING!r} (the binary task's class name)"
            )
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    config = replace(config, epochs=max(config.epochs, math.ceil(min_steps / steps_per_epoch)))
    pathology_model, findings = fit_attribute(
        make_model, train, val, attribute=FINDING, config=config, balanced=True
    )
    group_model, groups = fit_attribute(
        make_model, train, val, attribute=attribute, config=config, balanced=True
    )
    features = Features(pathology_model)
    train_features = embed(features, train.images)
    _, spacing = nearest_neighbours(train_features, train_features, exclude_self=True)
    return Rater(
        pathology_model=pathology_model,
        group_model=group_model,
        attribute=attribute,
        findings=findings,
        groups=groups,
        features=features,
        train_features=train_features,
        scale=float(np.median(spacing)),
    )


def validated(rater: Rater, validity: pd.DataFrame) -> Rater:
    """The rater scoring with only the classifiers that ``validity`` finds above chance.

    A classifier at chance on held-out real images scores noise: in a preference score it would
    pick winners at random, so it is left out (``rater_validity`` gives ``validity``).
    """
    valid = set(validity.loc[validity["valid"].astype(bool), "component"])
    return replace(rater, scored=tuple(c for c in COMPONENTS if c in valid))


def rater_validity(rater: Rater, test: Cohort, *, n_boot: int, seed: int) -> pd.DataFrame:
    """Whether each classifier of the rater can tell its classes on held-out real images.

    Balanced accuracy (mean recall over the classes present) with a 95% percentile interval
    from a patient bootstrap (rows, where there is no ``patient_id``), the same replicates for
    both components. A component whose lower bound is not above chance (1 / number of classes)
    cannot tell what it scores, and its score should not drive preferences.

    Args:
        rater: the rater to validate.
        test: real images it was not trained on, with ``finding`` and the attribute columns.
        n_boot: bootstrap replicates.
        seed: the run's seed.

    Returns:
        One row per component: ``component``, ``balanced_accuracy``, ``lo``, ``hi``,
        ``chance``, ``valid`` and ``n``.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be a positive number of replicates; got {n_boot}")
    truth, probs = rater.intended(test.meta), rater.probabilities(test.images)
    patients = test.meta["patient_id"] if "patient_id" in test.meta else np.arange(len(test))
    weights = patient_weights(np.asarray(patients), n_boot, seeds.stream(seed, "rater validity"))
    classes = {"pathology": rater.findings, "group": rater.groups}
    rows = []
    for component in COMPONENTS:
        hit = (probs[component].argmax(1) == truth[component]).astype(float)
        masks = [(truth[component] == k).astype(float) for k in np.unique(truth[component])]
        point = float(np.mean([hit[m > 0].mean() for m in masks]))
        with np.errstate(invalid="ignore", divide="ignore"):
            boot = np.nanmean([(weights @ (hit * m)) / (weights @ m) for m in masks], axis=0)
        lo, hi = np.nanpercentile(boot, [2.5, 97.5])
        chance = 1 / len(classes[component])
        rows.append({"component": component, "balanced_accuracy": point, "lo": float(lo),
                     "hi": float(hi), "chance": chance, "valid": bool(lo > chance),
                     "n": len(test)})  # fmt: skip
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- preference pairs


def panel_choices(
    first_scores: np.ndarray, second_scores: np.ndarray, *, agreement: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """A simulated panel's choice per pair: the higher score, reversed on 1 - agreement of pairs.

    Physicians agree with one another (and so with any expert score) on ~70-90% of pairs; each
    pair is reversed independently with probability 1 - ``agreement``. A tie goes to the first.

    Args:
        first_scores: the rater's score of each pair's first image.
        second_scores: the same of the second image.
        agreement: the chance that the panel prefers the higher-scored image, in [0.5, 1].
        seed: the run's seed (stream ``rater agreement``).

    Returns:
        Whether the first image wins, and whether the choice was reversed, per pair.
    """
    if not 0.5 <= agreement <= 1:
        raise ValueError(f"agreement must be in [0.5, 1]; got {agreement!r}")
    first_scores, second_scores = np.asarray(first_scores), np.asarray(second_scores)
    if first_scores.shape != second_scores.shape:
        raise ValueError(f"{first_scores.shape} first scores but {second_scores.shape} second")
    flipped = seeds.rng(seed, "rater agreement").random(len(first_scores)) >= agreement
    return (first_scores >= second_scores) != flipped, flipped


def rate_pairs(
    rater: Rater,
    first: np.ndarray,
    second: np.ndarray,
    *,
    conditions: pd.DataFrame,
    agreement: float,
    seed: int,
    name: str = "simulated panel",
) -> tuple[pd.DataFrame, np.ndarray]:
    """Preference pairs of a simulated panel, in the schema of ``fairkit.data.preferences``.

    Args:
        rater: scores both images of each pair.
        first: uint8 (N, C, H, W); ``first[i]`` and ``second[i]`` were generated for condition
            row i.
        second: the other image of each pair, same shape.
        conditions: one row per pair: ``finding``, the rater's attribute and any other
            condition columns, all copied to the pairs table.
        agreement: the share of pairs on which the panel prefers the higher score, in [0.5, 1].
        seed: the run's seed.
        name: the ``rater`` column's value.

    Returns:
        The pairs table (``PAIR_COLUMNS``, ``flipped`` and the condition columns; ``winner`` and
        ``loser`` index the images) and the images, ``np.concatenate([first, second])``.
    """
    if first.shape != second.shape or len(first) != len(conditions):
        raise ValueError(
            f"first {first.shape} and second {second.shape} must match, one per condition row "
            f"({len(conditions)})"
        )
    clash = sorted(set(conditions.columns) & {*PAIR_COLUMNS, "flipped"})
    if clash:
        raise ValueError(f"condition columns {clash} clash with the pairs table's own columns")
    scores = [rater.score(x, conditions)["score"].to_numpy() for x in (first, second)]
    first_wins, flipped = panel_choices(*scores, agreement=agreement, seed=seed)
    n = len(first)
    rows = np.arange(n)
    winner, loser = np.where(first_wins, rows, rows + n), np.where(first_wins, rows + n, rows)
    pairs = pd.DataFrame(
        {
            "pair_id": rows,
            "winner": winner,
            "loser": loser,
            "winner_score": np.where(first_wins, *scores),
            "loser_score": np.where(first_wins, scores[1], scores[0]),
            "rater": name,
            "flipped": flipped,
        }
    )
    pairs = pd.concat([pairs, conditions.reset_index(drop=True)], axis=1)
    return pairs, np.concatenate([first, second])
