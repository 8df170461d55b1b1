"""SPARE: one model per group, trained with sample weights from decision-boundary distances.

Xu et al., "Rethinking fairness in medical imaging: maximizing group-specific performance",
Medical Image Analysis 109:103950 (2026). Each training sample gets, for each target group, a
weight in (0, 1] from two distances estimated by the minimal adversarial perturbation
(DeepFool, Moosavi-Dezfooli et al. 2016):

- utility: distance to the task model's decision boundary (near = informative);
- similarity: distance to the target group's region of a group classifier (0 when the sample is
  already predicted to be in the target group: it brings no distribution shift).

d = lambda * d_utility + (1 - lambda) * d_similarity and w = exp(-d / tau). The group models share
their first ``share_stages`` stages and are trained together through the one training loop.
Hand-written (new science): DeepFool in batch form, the weights and the ablations' variants.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.fx import GraphModule
from torch.fx.experimental.optimization import fuse
from torch.fx.proxy import TraceError
from tqdm.auto import tqdm

from fairkit.amplification import Experiment
from fairkit.data import Cohort
from fairkit.fairness import Report, auroc, class_index, positive_scores, with_intervals
from fairkit.mitigation.baselines import MethodPredictions, group_threshold_decisions
from fairkit.models.classifier import stages
from fairkit.train import TrainConfig, as_tensor, fit, fit_attribute, predict

VARIANTS = ("spare", "similarity", "utility", "confidence", "binary", "group_level")
COMPARED = ("erm", "in_group", "resample", "reweight", "groupdro", "threshold", "spare")
PER_GROUP_METRICS = ("precision", "recall", "f1")
GAP_METRICS = ("equal_opportunity", "equalized_odds")
ESTIMATORS = ("deepfool", "confidence")
POOL_BATCHES = 32  # DeepFool holds this many batches of inputs (and perturbations) at once


# --------------------------------------------------------------------------- DeepFool


@dataclass
class DeepFoolResult:
    """Minimal perturbations found by DeepFool, one row per input.

    Attributes:
        distance: L2 norm of the minimal perturbation r (without the overshoot).
        perturbation: (1 + overshoot) * r, which moves each input across the boundary.
        converged: whether the prediction changed within ``max_iter`` steps.
        iterations: gradient steps taken per input.
        label: the model's prediction for the unperturbed input.
    """

    distance: np.ndarray
    perturbation: torch.Tensor
    converged: np.ndarray
    iterations: np.ndarray
    label: np.ndarray


def deepfool(
    model: nn.Module,
    x: torch.Tensor,
    *,
    candidates: int = 3,
    target: int | None = None,
    overshoot: float = 0.02,
    max_iter: int = 50,
    batch_size: int | None = None,
    device="cpu",
    progress: bool = False,
) -> DeepFoolResult:
    """Batched multi-class DeepFool: the smallest L2 perturbation that changes the prediction.

    Each step linearises the ``candidates`` classes ranked highest at the input (other than the
    predicted one) and moves to the nearest linearised boundary (Moosavi-Dezfooli et al. 2016,
    Algorithm 2). Inputs step together, one batched gradient call per step; inputs whose
    prediction has changed leave the batch and waiting ones take their places. With ``target``,
    the only candidate is that class and an input already predicted as ``target`` is at
    distance 0.

    Args:
        model: maps (B, ...) inputs to (B, classes) logits; used in eval mode, untouched.
        x: the inputs, any float shape (B, ...).
        candidates: how many of the highest-ranked other classes are linearised per step.
        target: a class to reach, instead of any other class.
        overshoot: the returned perturbation is (1 + overshoot) r so that it crosses.
        max_iter: steps before an input is given up (``converged`` false).
        batch_size: inputs per gradient call; default 128 on a CPU (bound by arithmetic), 512 on
            a GPU (bound by kernel launches at small batches).
        device: where the model runs.
        progress: show a tqdm bar over pools of ``POOL_BATCHES`` batches.
    """
    frozen = _frozen_copy(model, device)
    batch_size = batch_size or (128 if torch.device(device).type == "cpu" else 512)
    parts = [
        _deepfool_pool(frozen, pool.to(device), candidates, target, overshoot, max_iter, batch_size)
        for pool in tqdm(
            x.split(POOL_BATCHES * batch_size), desc="DeepFool", leave=False, disable=not progress
        )
    ]
    return DeepFoolResult(
        np.concatenate([p[0] for p in parts]),
        torch.cat([p[1] for p in parts]),
        *(np.concatenate([p[k] for p in parts]) for k in (2, 3, 4)),
    )


def deepfool_distance(model: nn.Module, x: torch.Tensor, **kwargs) -> np.ndarray:
    """The L2 distance of each input to the model's decision boundary, by ``deepfool``."""
    return deepfool(model, x, **kwargs).distance


def _frozen_copy(model: nn.Module, device) -> nn.Module:
    """An eval-mode copy without parameter gradients, batch norm folded into convolutions.

    Folding (torch.fx's ``fuse``) makes DeepFool's passes about 1.3x faster on CPU; models that
    torch.fx cannot trace, or that are traced already, are copied as they are. On a GPU the
    copy's weights go channels-last like the inputs: 1.5-2.4x for ResNet-18 at 64 px on an H100,
    where mixed layouts convert at every convolution (no gain on CPU).
    """
    model = copy.deepcopy(model).eval().requires_grad_(False).to(device)
    if not isinstance(model, GraphModule):
        with contextlib.suppress(TraceError):
            model = fuse(model)
    if torch.device(device).type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


def _deepfool_pool(model, x0, candidates, target, overshoot, max_iter, batch_size):
    """DeepFool on a pool of inputs, the working batch refilled as inputs cross the boundary.

    Inputs that have crossed leave the batch and waiting ones take their places, so every
    gradient call runs on a full batch (small leftover batches waste most of a CPU's time).
    Without a target, an input's prediction and candidate classes come from its first step's
    forward pass, saving a separate pass.
    """
    n, device = len(x0), x0.device
    if x0.ndim == 4:  # about twice as fast for convolutions on CPU; the GPU copy's layout
        x0 = x0.contiguous(memory_format=torch.channels_last)
    original = torch.full((n,), -1, dtype=torch.long, device=device)  # -1: not seen yet
    with torch.no_grad():
        n_classes = model(x0[:1]).shape[1]
    width = 1 if target is not None else min(candidates, n_classes - 1)
    ranked = torch.full((n, width), -1, dtype=torch.long, device=device)
    if target is not None:
        with torch.no_grad():
            original = torch.cat([model(b).argmax(1) for b in x0.split(batch_size)])
        ranked[:] = target
    r = torch.zeros_like(x0)
    iterations = torch.zeros(n, dtype=torch.long, device=device)
    converged = torch.ones(n, dtype=torch.bool, device=device)
    waiting = (original != target).nonzero().flatten() if target is not None else torch.arange(n)
    working = waiting[:0].to(device)
    waiting = waiting.to(device)
    while len(working) or len(waiting):
        fill = batch_size - len(working)
        working, waiting = torch.cat([working, waiting[:fill]]), waiting[fill:]
        # Linearise at the overshot point, as the original algorithm does.
        point = x0[working] + (1 + overshoot) * r[working]
        step, original[working], ranked[working] = _linearised_step(
            model, point, original[working], ranked[working]
        )
        r[working] += step
        iterations[working] += 1
        with torch.no_grad():
            label = model(x0[working] + (1 + overshoot) * r[working]).argmax(1)
        open_ = _not_crossed(label, original[working], target)
        given_up = open_ & (iterations[working] >= max_iter)
        converged[working[given_up]] = False
        working = working[open_ & ~given_up]
    distance = r.flatten(1).norm(dim=1).double().cpu().numpy()
    return (
        distance,
        ((1 + overshoot) * r).contiguous().cpu(),
        converged.cpu().numpy(),
        iterations.cpu().numpy(),
        original.cpu().numpy(),
    )


def _not_crossed(label, original, target):
    return label == original if target is None else label != target


def _linearised_step(model, x, original, ranked):
    """One DeepFool step for each input: r_i = |f_l| / ||w_l||^2 * w_l for the nearest l.

    f_k = logit_k - logit_original and w_k its input gradient, for every candidate k; the
    gradients of all candidates come from one batched vector-Jacobian product. Inputs seen for
    the first time (``original`` -1) take their prediction and top candidates from this pass.
    Returns the steps and the (completed) ``original`` and ``ranked``.
    """
    x = x.detach().requires_grad_(True)
    logits = model(x)
    fresh = original < 0
    if fresh.any():
        original, ranked = original.clone(), ranked.clone()
        seen = logits.detach()[fresh]
        original[fresh] = seen.argmax(1)
        others = seen.scatter(1, original[fresh][:, None], -torch.inf)
        ranked[fresh] = others.topk(ranked.shape[1], dim=1).indices
    f = logits.gather(1, ranked) - logits.gather(1, original[:, None])  # (B, K)
    k = f.shape[1]
    if k == 1:
        (grad,) = torch.autograd.grad(f.sum(), x)
        grads = grad[None]
    else:
        basis = torch.eye(k, device=x.device)[:, None, :].expand(k, len(x), k)
        (grads,) = torch.autograd.grad(f, x, grad_outputs=basis, is_grads_batched=True)
    w = grads.flatten(2).transpose(0, 1)  # (B, K, D)
    norms = w.norm(dim=2).clamp_min(1e-12)
    nearest = (f.detach().abs() / norms).argmin(1)
    rows = torch.arange(len(x), device=x.device)
    step = f.detach()[rows, nearest].abs() / norms[rows, nearest] ** 2
    return (step[:, None] * w[rows, nearest]).view_as(x), original, ranked


# --------------------------------------------------------------------------- distances


@dataclass
class Distances:
    """The two SPARE signals for every training sample.

    Attributes:
        utility: distance to the task model's boundary, shape (N,).
        similarity: distance into each target group's region, shape (N, groups); 0 where the
            group classifier already predicts that group.
        groups: the target groups, in column order.
        estimator: ``deepfool`` (L2 pixel distances) or ``confidence`` (probability margins).
    """

    utility: np.ndarray
    similarity: np.ndarray
    groups: tuple[str, ...]
    estimator: str = "deepfool"


def boundary_distances(
    task_model: nn.Module,
    group_model: nn.Module,
    cohort: Cohort,
    *,
    groups: tuple[str, ...],
    estimator: str = "deepfool",
    device="cpu",
    overshoot: float = 0.1,
    **deepfool_kwargs,
) -> Distances:
    """Utility and similarity distances of every sample of ``cohort``.

    ``group_model`` predicts the index of ``groups``. With ``estimator="confidence"`` the
    distances are probability margins instead (the paper's confidence-based ablation): the top
    class's probability minus the runner-up's, and the predicted group's minus the target's.
    The overshoot is 0.1 rather than DeepFool's 0.02: the weights need distances to a few per
    cent only, and it saves a third of the steps (on the quick skin cohort: median change 4%,
    rank correlation 0.999 with 0.02).
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}; got {estimator!r}")
    x = as_tensor(cohort.images)
    if estimator == "confidence":
        task = _probabilities(task_model, x, device)
        top2 = np.sort(task, axis=1)[:, -2:]
        group = _probabilities(group_model, x, device)
        similarity = group.max(1, keepdims=True) - group
        return Distances(top2[:, 1] - top2[:, 0], similarity, groups, estimator)
    kwargs = {"device": device, "overshoot": overshoot, **deepfool_kwargs}
    utility = deepfool_distance(task_model, x, **kwargs)
    similarity = np.zeros((len(x), len(groups)))
    if len(groups) == 2:  # one boundary: each sample's distance into the other group's region
        found = deepfool(group_model, x, **kwargs)
        similarity[np.arange(len(x)), 1 - found.label] = found.distance
        return Distances(utility, similarity, groups, estimator)
    predicted = _probabilities(group_model, x, device).argmax(1)
    for g in range(len(groups)):
        outside = np.flatnonzero(predicted != g)
        if len(outside):
            similarity[outside, g] = deepfool_distance(group_model, x[outside], target=g, **kwargs)
    return Distances(utility, similarity, groups, estimator)


@torch.no_grad()
def _probabilities(model: nn.Module, x: torch.Tensor, device, batch_size: int = 512):
    model.eval().to(device)
    return torch.cat(
        [model(b.to(device)).float().softmax(1).cpu() for b in x.split(batch_size)]
    ).numpy()


# --------------------------------------------------------------------------- weights


def spare_weights(
    utility: np.ndarray, similarity: np.ndarray, *, lam: float = 0.5, temperature: float = 1.0
) -> np.ndarray:
    """SPARE's weight of each sample for one target group: w = exp(-d / tau) in (0, 1].

    d = lam * utility + (1 - lam) * similarity (the paper's combination). A sample at distance 0
    gets weight 1; weights are floored at 1e-8 so that no sample is dropped entirely.
    """
    if not 0 <= lam <= 1:
        raise ValueError(f"lam must lie in [0, 1]; got {lam}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive; got {temperature}")
    utility, similarity = np.asarray(utility, float), np.asarray(similarity, float)
    if (utility < 0).any() or (similarity < 0).any():
        raise ValueError("distances must be non-negative")
    d = lam * utility + (1 - lam) * similarity
    return np.clip(np.exp(-d / temperature), 1e-8, 1.0)


def _unit_scale(values: np.ndarray) -> np.ndarray:
    """Distances divided by their median positive value.

    The two distances come from different networks and are in different units; on one scale
    lambda weighs them as the paper intends (our choice: the summary does not say how).
    """
    positive = values[values > 0]
    return values / (np.median(positive) if len(positive) else 1.0)


def weight_matrix(
    distances: Distances,
    *,
    variant: str = "spare",
    lam: float = 0.5,
    temperature: float = 1.0,
    in_group: np.ndarray | None = None,
) -> np.ndarray:
    """Weights of every sample for every target group, shape (N, groups), for one variant.

    Args:
        distances: the two signals (``boundary_distances``).
        variant: ``spare`` (both signals), ``similarity`` or ``utility`` alone, ``confidence``
            (same formula, distances from ``estimator="confidence"``), ``binary`` (keep the
            nearest samples with weight 1, as many as SPARE's total weight, drop the rest) or
            ``group_level`` (in-group samples 1, out-of-group ones one shared weight with the
            same total as SPARE's).
        lam: the weight of utility against similarity.
        temperature: tau of exp(-d / tau), in units of the median distance.
        in_group: (N, groups) booleans: whether each sample belongs to each group
            (``group_level`` only).
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}; got {variant!r}")
    if (variant == "confidence") != (distances.estimator == "confidence"):
        raise ValueError(f"variant {variant!r} needs {distances.estimator!r} distances swapped")
    lam = {"similarity": 0.0, "utility": 1.0}.get(variant, lam)
    utility = _unit_scale(distances.utility)
    columns = []
    for g in range(len(distances.groups)):
        similarity = _unit_scale(distances.similarity[:, g])
        w = spare_weights(utility, similarity, lam=lam, temperature=temperature)
        if variant == "binary":
            d = lam * utility + (1 - lam) * similarity
            keep = np.argsort(d, kind="stable")[: max(1, round(w.sum()))]
            w = np.full_like(w, 1e-8)
            w[keep] = 1.0
        elif variant == "group_level":
            if in_group is None:
                raise ValueError("group_level weights need in_group membership")
            inside = in_group[:, g]
            w = np.where(inside, 1.0, w[~inside].mean() if (~inside).any() else 1.0)
        columns.append(w)
    return np.stack(columns, axis=1)


# --------------------------------------------------------------------------- group models


class GroupSpecific(nn.Module):
    """One network per group sharing their first ``share_stages`` stages.

    The output is (B, groups, classes): every group's logits for every input; the training loop
    trains each head with that group's weights, and ``head_column``/``head_names`` tell
    prediction which head scores which sample. ``share_stages`` = 0: independent networks;
    = all stages: one network for everyone.
    """

    def __init__(
        self, make_model: Callable[[], nn.Module], *, column: str, groups, share_stages: int
    ):
        super().__init__()
        first = stages(make_model())
        if not 0 <= share_stages <= len(first):
            raise ValueError(f"share_stages must lie in 0..{len(first)}; got {share_stages}")
        self.head_column, self.head_names = column, tuple(str(g) for g in groups)
        self.shared = nn.Sequential(*first[:share_stages])
        copies = [first] + [stages(make_model()) for _ in self.head_names[1:]]
        self.branches = nn.ModuleList(nn.Sequential(*c[share_stages:]) for c in copies)
        self.n_stages = len(first)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Every group's logits, (B, groups, classes)."""
        h = self.shared(x)
        if len(self.branches[0]) == 0:
            return h[:, None].expand(-1, len(self.head_names), -1)
        return torch.stack([branch(h) for branch in self.branches], dim=1)


def n_stages(make_model: Callable[[], nn.Module]) -> int:
    """How many stages a backbone has for ``share_stages``."""
    return len(stages(make_model()))


def fit_group_models(
    make_model: Callable[[], nn.Module],
    train: Cohort,
    val: Cohort,
    *,
    weights: np.ndarray,
    attribute: str,
    groups: tuple[str, ...],
    share_stages: int,
    config: TrainConfig,
) -> GroupSpecific:
    """Train the group-specific networks together, head g with column g of ``weights``.

    Model selection uses every validation sample scored by its own group's head.
    """
    model = GroupSpecific(make_model, column=attribute, groups=groups, share_stages=share_stages)
    return fit(model, train, config=config, val=val, sample_weight=weights).model


def spare_predictions(
    model: GroupSpecific, val: Cohort, test: Cohort, *, name: str, positive: str, device="cpu"
) -> MethodPredictions:
    """Validation and test predictions of group-specific models, thresholds chosen per group."""
    val_p, test_p = predict(model, val, device=device), predict(model, test, device=device)
    decision = group_threshold_decisions(
        val_p, test_p, attribute=model.head_column, positive=positive
    )
    return MethodPredictions(name, val_p, test_p.assign(decision=decision), model)


def mixing_subset(cohort: Cohort, *, attribute: str, group: str, ratio: float, seed: int) -> Cohort:
    """All of ``group``'s samples plus out-of-group samples numbering ``ratio`` times as many.

    For the paper's in-group vs out-of-group observation; ratio is capped by what exists.
    """
    inside = np.flatnonzero((cohort.meta[attribute].astype(str) == group).to_numpy())
    outside = np.flatnonzero((cohort.meta[attribute].astype(str) != group).to_numpy())
    if len(inside) == 0:
        raise ValueError(f"no sample has {attribute}={group!r}")
    rng = np.random.default_rng([seed, 11])
    take = min(len(outside), round(ratio * len(inside)))
    return cohort.subset(np.sort(np.concatenate([inside, rng.choice(outside, take, False)])))


def in_group_matrix(cohort: Cohort, attribute: str, groups) -> np.ndarray:
    """(N, groups) booleans: whether each sample belongs to each group."""
    values = cohort.meta[attribute].astype(str).to_numpy()
    return np.stack([values == g for g in groups], axis=1)


def effective_share(weights: np.ndarray, in_group: np.ndarray, groups) -> pd.DataFrame:
    """Per target group: total weight of in-group and out-of-group samples, and their means."""
    rows = []
    for g, name in enumerate(groups):
        inside = in_group[:, g]
        rows.append(
            {
                "target": name,
                "in_group_weight": weights[inside, g].sum(),
                "out_group_weight": weights[~inside, g].sum(),
                "mean_in": weights[inside, g].mean() if inside.any() else np.nan,
                "mean_out": weights[~inside, g].mean() if (~inside).any() else np.nan,
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- the chapter's study


@dataclass
class Study:
    """SPARE and its ablations on one cohort setting of an ``Experiment``, each run once.

    The task model of the utility signal is the setting's ERM baseline; the group classifier
    has the same backbone. Distances, weights and trained group models are remembered; a copy
    made with ``dataclasses.replace`` (another lam or temperature) shares what it can.
    """

    experiment: Experiment
    kind: str = "none"
    strength: float = 0.0
    lam: float = 0.5
    temperature: float = 1.0
    share_stages: int = 0
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def attribute(self) -> str:
        """The protected attribute whose groups get their own models."""
        return self.experiment.task.attribute

    @property
    def positive(self) -> str:
        """The positive class name."""
        return self.experiment.task.names[1]

    @property
    def cohorts(self) -> dict[str, Cohort]:
        """Train, validation and test cohorts of this setting."""
        return self.experiment.cohorts(self.kind, self.strength)

    def baseline(self, method: str) -> MethodPredictions:
        """One of ``baselines.METHODS`` on this setting."""
        return self.experiment.run(method, self.kind, self.strength)

    def _remember(self, key, compute):
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def group_model(self) -> tuple[nn.Module, tuple[str, ...]]:
        """The group classifier and the group names (its classes)."""
        c = self.cohorts
        return self._remember(
            "group_model",
            lambda: fit_attribute(
                self.experiment.make_model,
                c["train"],
                c["val"],
                attribute=self.attribute,
                config=self.experiment.config(),
            ),
        )

    def distances(self, estimator: str = "deepfool") -> Distances:
        """Utility and similarity distances of the training set; seconds in ``timing``."""

        def compute():
            (group_model, groups), task_model = self.group_model(), self.baseline("erm").model
            start = time.perf_counter()
            d = boundary_distances(
                task_model,
                group_model,
                self.cohorts["train"],
                groups=groups,
                estimator=estimator,
                device=self.experiment.device,
            )
            self._cache[("seconds", estimator)] = time.perf_counter() - start
            return d

        return self._remember(("distances", estimator), compute)

    def weights(self, variant: str = "spare") -> np.ndarray:
        """(N, groups) training weights of one variant."""
        d = self.distances("confidence" if variant == "confidence" else "deepfool")
        in_group = in_group_matrix(self.cohorts["train"], self.attribute, d.groups)
        return weight_matrix(
            d, variant=variant, lam=self.lam, temperature=self.temperature, in_group=in_group
        )

    def run(self, variant: str = "spare", *, share_stages: int | None = None) -> MethodPredictions:
        """Group-specific models trained with one variant's weights (sharing: the study's)."""
        share_stages = self.share_stages if share_stages is None else share_stages

        def compute():
            c, (_, groups) = self.cohorts, self.group_model()
            weights = self.weights(variant)
            start = time.perf_counter()
            model = fit_group_models(
                self.experiment.make_model,
                c["train"],
                c["val"],
                weights=weights,
                attribute=self.attribute,
                groups=groups,
                share_stages=share_stages,
                config=self.experiment.config(),
            )
            seconds = time.perf_counter() - start
            name = "spare" if variant == "spare" else f"spare ({variant})"
            out = spare_predictions(
                model,
                c["val"],
                c["test"],
                name=name,
                positive=self.positive,
                device=self.experiment.device,
            )
            return replace(out, seconds=seconds)

        return self._remember(("run", variant, share_stages, self.lam, self.temperature), compute)

    def mixing(self, group: str, ratio: float) -> MethodPredictions:
        """A model for ``group`` trained on its own samples plus ``ratio`` times as many others.

        Predictions cover the group's validation and test samples only.
        """

        def compute():
            c = self.cohorts
            train = mixing_subset(
                c["train"],
                attribute=self.attribute,
                group=group,
                ratio=ratio,
                seed=self.experiment.seed,
            )
            mine = {
                k: c[k].subset((c[k].meta[self.attribute].astype(str) == group).to_numpy())
                for k in ("val", "test")
            }
            start = time.perf_counter()
            model = fit(
                self.experiment.make_model(),
                train,
                config=self.experiment.config(),
                val=mine["val"],
            ).model
            device = self.experiment.device
            return MethodPredictions(
                f"{group} + {ratio:g}x others",
                predict(model, mine["val"], device=device),
                predict(model, mine["test"], device=device),
                model,
                time.perf_counter() - start,
            )

        return self._remember(("mixing", group, ratio), compute)

    def evaluate(self, predictions: MethodPredictions) -> Report:
        """The fairness report on this setting's attribute."""
        return self.experiment.evaluate(predictions)

    def seconds(self, estimator: str = "deepfool") -> float:
        """Wall time of computing the distances of the training set."""
        self.distances(estimator)
        return self._cache[("seconds", estimator)]


def per_group(report: Report, attribute: str, metrics=PER_GROUP_METRICS, **labels) -> pd.DataFrame:
    """Rows (group, metric, value, lo, hi) of a report for one attribute, with labels added."""
    rows = report.by_group[
        (report.by_group["attribute"] == attribute) & report.by_group["metric"].isin(metrics)
    ]
    return rows.drop(columns=["attribute"]).assign(**labels)


def gaps(report: Report, attribute: str, metrics=GAP_METRICS, **labels) -> pd.DataFrame:
    """Rows (metric, value, lo, hi) of a report's gaps for one attribute, with labels added."""
    rows = report.gaps[
        (report.gaps["attribute"] == attribute) & report.gaps["metric"].isin(metrics)
    ]
    return rows.drop(columns=["attribute"]).assign(**labels)


def compare(study: Study, methods=COMPARED) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-group precision/recall/F1 and the gaps of SPARE and every baseline on a setting."""
    groups, gap_rows = [], []
    for method in tqdm(methods, desc="methods", leave=False):
        predictions = study.run() if method == "spare" else study.baseline(method)
        report = study.evaluate(predictions)
        labels = {"method": method, "seconds": predictions.seconds}
        groups.append(per_group(report, study.attribute, **labels))
        gap_rows.append(gaps(report, study.attribute, **labels))
    return pd.concat(groups, ignore_index=True), pd.concat(gap_rows, ignore_index=True)


def ablation(study: Study, variants=VARIANTS) -> pd.DataFrame:
    """Per-group F1 (and precision, recall) of every weighting variant."""
    rows = [
        per_group(study.evaluate(study.run(v)), study.attribute, variant=v)
        for v in tqdm(variants, desc="ablation", leave=False)
    ]
    return pd.concat(rows, ignore_index=True)


def sharing_curve(study: Study, share=None) -> pd.DataFrame:
    """Per-group F1, training seconds and parameter count against the number of shared stages."""
    total = n_stages(study.experiment.make_model)
    rows = []
    for k in tqdm(range(total + 1) if share is None else share, desc="sharing", leave=False):
        predictions = study.run(share_stages=k)
        f1 = per_group(study.evaluate(predictions), study.attribute, metrics=("f1",))
        params = sum(p.numel() for p in predictions.model.parameters())
        rows.append(f1.assign(shared=k, of=total, seconds=predictions.seconds, parameters=params))
    return pd.concat(rows, ignore_index=True)


def validation_auroc(predictions: MethodPredictions, attribute: str, positive: str) -> pd.Series:
    """Per-group AUROC of the validation predictions: threshold-free, for choosing settings.

    A group whose validation images hold one class only gets NaN.
    """
    val = predictions.val
    y = val["y_true"].to_numpy() == class_index(val, positive)
    scores = positive_scores(val, positive)
    rows_of = val.groupby(val[attribute].astype(str)).indices
    return pd.Series({g: auroc(y[rows], scores[rows]) for g, rows in sorted(rows_of.items())})


def temperature_sweep(study: Study, temperatures) -> tuple[pd.DataFrame, float]:
    """SPARE at each temperature, and the one with the best worst-group validation AUROC.

    The table holds, per temperature and group, the validation AUROC that decides and the
    test F1 (95% CI) that it leads to; the test set plays no part in the choice.
    """
    if not len(temperatures):
        raise ValueError("temperature_sweep needs at least one temperature")
    rows = []
    for t in tqdm(temperatures, desc="temperature", leave=False):
        tuned = replace(study, temperature=float(t))
        predictions = tuned.run()
        chosen_by = validation_auroc(predictions, study.attribute, study.positive)
        f1 = per_group(study.evaluate(predictions), study.attribute, metrics=("f1",))
        rows.append(f1.assign(temperature=float(t), val_auroc=f1["group"].map(chosen_by)))
    table = pd.concat(rows, ignore_index=True)
    best = table.groupby("temperature")["val_auroc"].min().idxmax()
    return table.assign(chosen=table["temperature"] == best), float(best)


def mixing_sweep(study: Study, ratios) -> pd.DataFrame:
    """F1 of each group's own model against the amount of out-of-group training data.

    Ratios beyond what the other groups hold are cut to "all of them", and run once.
    """
    rows = []
    sizes = study.cohorts["train"].meta[study.attribute].astype(str).value_counts()
    for group in sorted(sizes.index):
        most = (sizes.sum() - sizes[group]) / sizes[group]  # every out-of-group image
        reachable = sorted({min(float(r), most) for r in ratios})
        for ratio in tqdm(reachable, desc=f"mixing {group}", leave=False):
            report = study.evaluate(study.mixing(group, ratio))
            rows.append(per_group(report, study.attribute, metrics=("f1",), ratio=ratio))
    return pd.concat(rows, ignore_index=True)


def findings(by_group: pd.DataFrame, ablation: pd.DataFrame, sharing: pd.DataFrame) -> list[str]:
    """Chapter 3's verdicts as markdown bullets, to set beside the paper's claims.

    Per setting of ``by_group`` (``compare``'s tables with a ``setting`` column): SPARE's and
    ERM's F1 (95% CI) per group and which groups SPARE wins; then the ablation variant and the
    number of shared stages with the best mean F1 over groups.
    """
    lines = []
    for setting, rows in by_group[by_group["metric"] == "f1"].groupby("setting", sort=False):
        table = rows.pivot(index="method", columns="group", values="value")
        shown = rows.set_index(["method", "group"]).pipe(with_intervals)
        beats_erm = [g for g in table.columns if table.loc["spare", g] > table.loc["erm", g]]
        better = int((table.loc["spare"] > table.drop(index="spare").max()).sum())
        lines.append(
            f"- **{setting}**: SPARE F1 "
            + ", ".join(f"{g} {shown['spare', g]}" for g in table.columns)
            + "; ERM "
            + ", ".join(f"{g} {shown['erm', g]}" for g in table.columns)
            + f". SPARE beats ERM for {len(beats_erm)} of {len(table.columns)} groups"
            + f" ({', '.join(beats_erm) or 'none'}) and every baseline for {better}."
        )
    variant = ablation[ablation["metric"] == "f1"].groupby("variant")["value"].mean().idxmax()
    shared = sharing.groupby("shared")["value"].mean().idxmax()
    return lines + [
        f"- Ablation: the highest mean F1 over groups comes from **{variant}** weights "
        "(the paper: both signals, continuous weights).",
        f"- Sharing: the best mean F1 is at **{shared}** shared stages of "
        f"{int(sharing['of'].iloc[0])} (the paper: fully independent models best).",
    ]
