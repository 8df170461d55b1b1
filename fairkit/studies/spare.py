"""Chapter 3, SPARE against the baselines: the temperature, ablation, sharing and mixing studies.

A study is one scenario of an experiment (``Experiment.scenario``) and a base ``Spare`` method;
every variant is another ``Spare`` (``dataclasses.replace``), trained once by the experiment.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from fairkit import seeds, tuning
from fairkit.data import Cohort
from fairkit.experiment import Scenario
from fairkit.fairness import Report
from fairkit.methods import (
    ERM,
    GroupThresholds,
    InGroup,
    Method,
    MethodPredictions,
    Spare,
    Threshold,
)
from fairkit.methods.spare import VARIANTS, in_group_matrix
from fairkit.models import n_stages
from fairkit.training import fit, predict
from fairkit.tuning import Tuned
from fairkit.verdicts import paired_table, pool_seeds

PER_GROUP_METRICS = ("precision", "recall", "f1")
GAP_METRICS = ("equal_opportunity", "equalized_odds")


def check_sharing(scenarios: dict[tuple, Scenario], *, share_stages: int) -> None:
    """Refuse a ``share_stages`` deeper than a scenario's backbone, before anything trains."""
    for scenario in scenarios.values():
        total = n_stages(scenario.make_model)
        if share_stages > total:
            name = scenario.experiment.backbone or scenario.experiment.settings.backbone
            raise ValueError(
                f"share_stages={share_stages}: {name} has {total} stages (0 to {total} can be "
                "shared)"
            )


RULE = "worst_group"  # SPARE's own objective, the best model for every group; every control alike


def controls() -> dict[str, Method]:
    """The compared baselines by label, each single-model one at per-group thresholds.

    SPARE and in-group training choose one threshold per group on validation data; so do the
    single-model baselines here (``GroupThresholds``), so that a difference is the weights' or
    the models', not the thresholds'. ERM at one global threshold stays as a reference.
    """
    return {
        "erm, one threshold": ERM(),
        "erm": GroupThresholds("erm"),
        "resample": GroupThresholds("resample"),
        "reweight": GroupThresholds("reweight"),
        "groupdro": GroupThresholds("groupdro"),
        "in_group": InGroup(),
        "threshold (EOdds)": Threshold(),
    }


def tuned_controls(scenario: Scenario) -> dict[str, Tuned]:
    """Every control tuned as SPARE is (``tuning.tune``: the same budget, the rule ``RULE``)."""
    return {
        label: tuning.tune(scenario, method, rules=(RULE,))
        for label, method in tqdm(controls().items(), desc="tuning", leave=False)
    }


def premise_control(scenario: Scenario) -> pd.DataFrame:
    """Positive control: does the under-representation harm the minority in this testbed?

    ERM (the control ``"erm"``) trained on ``scenario`` minus ERM trained on the same
    experiment with every group an equal share, each tuned on its own validation data by
    ``RULE``, on the same test patients: per-group precision, recall and F1 (comparison
    ``positive control``). SPARE's claims for the under-represented group can only be seen
    where this harm is.
    """
    if scenario.kind != "under":
        raise ValueError(
            f"the premise control needs an under-representation; got {scenario.kind!r}"
        )
    equal_share = 1 / scenario.train.meta[scenario.attribute].nunique()
    balanced = scenario.experiment.scenario("under", equal_share)
    reports = {
        label: _report(s, tuning.tune(s, controls()["erm"], rules=(RULE,)).chosen[RULE])[0]
        for label, s in (("erm", scenario), ("erm, balanced", balanced))
    }
    return paired_table(
        reports,
        [("erm", "erm, balanced")],
        scenario.attribute,
        comparison="positive control",
        metrics=PER_GROUP_METRICS,
    )


def weight_check(scenario: Scenario, spare: Spare, *, label: str = "spare") -> pd.DataFrame:
    """Manipulation check: does each group model's weighting depart from flat weights?

    Kish's effective sample size of the weights, (sum w)^2 / sum w^2, against the number of
    training images (flat weights: equal), per target group, in comparisons' form: comparison
    ``manipulation``, a ``label``, b ``flat``, metric ``effective_size``; ``value`` their
    difference in images, no interval (seeds pool it). Near-flat weights leave each group
    model ERM on all images. The group's mean weights on its own and on other groups' images
    (``effective_share``) ride along as ``mean_in`` and ``mean_out``.
    """
    groups = spare.group_model(scenario)[1]
    weights = spare.weights(scenario)
    in_group = in_group_matrix(scenario.train, scenario.attribute, groups)
    share = effective_share(weights, in_group, groups)
    effective = weights.sum(0) ** 2 / (weights**2).sum(0)
    return pd.DataFrame(
        {
            "comparison": "manipulation",
            "a": label,
            "b": "flat",
            "group": share["target"],
            "metric": "effective_size",
            "a_value": effective,
            "b_value": float(len(weights)),
            "value": effective - len(weights),
            "lo": np.nan,
            "hi": np.nan,
            "mean_in": share["mean_in"],
            "mean_out": share["mean_out"],
        }
    )


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


def _report(scenario: Scenario, method) -> tuple[Report, MethodPredictions]:
    predictions = scenario.predictions(method)
    return scenario.experiment.evaluate(predictions), predictions


@dataclass
class Compared:
    """Reports and tables of a set of compared methods (or variants) on one scenario.

    ``tuning``: how each was tuned (``tuning.stacked``), where they were.
    """

    reports: dict[str, Report]
    by_group: pd.DataFrame
    gaps: pd.DataFrame
    tuning: pd.DataFrame | None = None


def evaluate_all(scenario: Scenario, methods: dict, *, column: str = "method") -> Compared:
    """Each labelled method's report, per-group precision/recall/F1, gaps and training seconds."""
    reports, groups, gap_rows = {}, [], []
    for label, method in tqdm(methods.items(), desc=column, leave=False):
        report, predictions = _report(scenario, method)
        reports[label] = report
        tags = {column: label, "seconds": predictions.seconds}
        groups.append(per_group(report, scenario.attribute, **tags))
        gap_rows.append(gaps(report, scenario.attribute, **tags))
    return Compared(
        reports, pd.concat(groups, ignore_index=True), pd.concat(gap_rows, ignore_index=True)
    )


def compare(scenario: Scenario, spare: Tuned) -> tuple[Compared, pd.DataFrame]:
    """SPARE and every control, each tuned alike, on a scenario; SPARE's paired differences.

    ``spare``: SPARE's own tuning (``temperature_sweep``). F1, precision and recall per group;
    the EOpp and EOdds gaps (the paper's fairness claim); ``Compared.tuning`` holds every
    method's tuning table.
    """
    tuned = tuned_controls(scenario) | {"spare": spare}
    compared = evaluate_all(scenario, {label: t.chosen[RULE] for label, t in tuned.items()})
    compared.tuning = tuning.stacked(tuned)
    pairs = [("spare", other) for other in compared.reports if other != "spare"]
    differences = paired_table(
        compared.reports,
        pairs,
        scenario.attribute,
        metrics=PER_GROUP_METRICS,
        gap_metrics=GAP_METRICS,
        comparison="method",
    )
    return compared, differences


def ablation(
    scenario: Scenario, spare: Spare, temperatures, variants=VARIANTS
) -> tuple[Compared, pd.DataFrame, pd.DataFrame]:
    """Every weighting variant at its own validation-chosen temperature, against full SPARE.

    Returns the variants' reports and tables, their temperature sweeps (``temperature_sweep``
    each) and the paired F1 differences variant - full SPARE, with each variant's weight
    check but full SPARE's (``weight_check``: flat weights cannot differ by their weighting).
    """
    tuned, sweeps = {}, []
    for variant in tqdm(variants, desc="ablation", leave=False):
        table, found = temperature_sweep(scenario, replace(spare, variant=variant), temperatures)
        tuned[variant] = found.chosen[RULE]
        sweeps.append(table.assign(variant=variant))
    compared = evaluate_all(scenario, tuned, column="variant")
    pairs = [(v, "spare") for v in variants if v != "spare"]
    if {"similarity", "utility"} <= set(variants):  # the paper: similarity alone beats utility
        pairs.append(("similarity", "utility"))
    differences = paired_table(compared.reports, pairs, scenario.attribute, comparison="ablation")
    checks = [  # full SPARE's own is the chapter's check of its main setting
        weight_check(scenario, method, label=name)
        for name, method in tuned.items()
        if name != "spare"
    ]
    differences = pd.concat([differences, *checks], ignore_index=True)
    return compared, pd.concat(sweeps, ignore_index=True), differences


def sharing_curve(
    scenario: Scenario, spare: Spare, share=None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-group F1, seconds and parameters against shared stages; paired F1 vs 0 shared.

    Every point keeps its networks at the best worst-group epoch: networks that share stages
    cannot each keep their own epoch, so per-head selection at k = 0 would mix the selection
    rule into the effect of sharing.
    """
    total = n_stages(scenario.make_model)
    rows, reports = [], {}
    for k in tqdm(range(total + 1) if share is None else share, desc="sharing", leave=False):
        point = replace(spare, share_stages=k, selection="worst_group")
        report, predictions = _report(scenario, point)
        reports[k] = report
        f1 = per_group(report, scenario.attribute, metrics=("f1",))
        params = sum(p.numel() for p in predictions.model.parameters())
        rows.append(f1.assign(shared=k, of=total, seconds=predictions.seconds, parameters=params))
    pairs = [(k, 0) for k in reports if k != 0] if 0 in reports else []
    differences = paired_table(reports, pairs, scenario.attribute, comparison="sharing")
    return pd.concat(rows, ignore_index=True), differences


def temperature_sweep(scenario: Scenario, spare: Spare, temperatures) -> tuple[pd.DataFrame, Tuned]:
    """SPARE at each temperature, and its tuning (``tuning.tune`` under ``RULE``).

    The table holds, per temperature and group, the validation AUROC that decides (and the
    number of validation images behind it) and the test F1 (95% CI) that it leads to; the test
    set plays no part in the choice.
    """
    found = tuning.tune(scenario, spare, grid={"temperature": tuple(temperatures)}, rules=(RULE,))
    rows = []
    val_sizes = scenario.val.meta[scenario.attribute].astype(str).value_counts()
    for t in tqdm(temperatures, desc="temperature", leave=False):
        report, predictions = _report(scenario, replace(spare, temperature=t))
        chosen_by = tuning.group_aurocs(
            predictions.val, attribute=scenario.attribute, positive=scenario.positive
        )
        f1 = per_group(report, scenario.attribute, metrics=("f1",))
        rows.append(
            f1.assign(
                temperature=float(t),
                val_auroc=f1["group"].map(chosen_by),
                val_n=f1["group"].map(val_sizes),
            )
        )
    table = pd.concat(rows, ignore_index=True)
    return table.assign(chosen=table["temperature"] == found.chosen[RULE].temperature), found


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


# --------------------------------------------------------------------------- mixing


def mixing_subset(cohort: Cohort, *, attribute: str, group: str, ratio: float, seed: int) -> Cohort:
    """All of ``group``'s samples plus out-of-group samples numbering ``ratio`` times as many.

    For the paper's in-group vs out-of-group observation; ratio is capped by what exists.
    """
    inside = np.flatnonzero((cohort.meta[attribute].astype(str) == group).to_numpy())
    outside = np.flatnonzero((cohort.meta[attribute].astype(str) != group).to_numpy())
    if len(inside) == 0:
        raise ValueError(f"no sample has {attribute}={group!r}")
    rng = seeds.rng(seed, "mixing")
    take = min(len(outside), round(ratio * len(inside)))
    return cohort.subset(np.sort(np.concatenate([inside, rng.choice(outside, take, False)])))


@dataclass(frozen=True)
class Mixing:
    """A model for ``group`` trained on its own images plus ``ratio`` times as many others.

    Its predictions cover the group's validation and test images only.
    """

    group: str
    ratio: float

    @property
    def name(self) -> str:
        """E.g. ``dark + 0.5x others``."""
        return f"{self.group} + {self.ratio:g}x others"

    def __call__(self, scenario: Scenario) -> MethodPredictions:
        """Train on the mixed subset; predict the group's validation and test images."""
        attribute, seed = scenario.attribute, scenario.experiment.seed
        train = mixing_subset(
            scenario.train, attribute=attribute, group=self.group, ratio=self.ratio, seed=seed
        )
        mine = {
            k: c.subset((c.meta[attribute].astype(str) == self.group).to_numpy())
            for k, c in (("val", scenario.val), ("test", scenario.test))
        }
        started = time.perf_counter()
        model = fit(scenario.make_model(), train, config=scenario.config(), val=mine["val"]).model
        device = scenario.experiment.device
        return MethodPredictions(
            self.name,
            predict(model, mine["val"], device=device),
            predict(model, mine["test"], device=device),
            model,
            time.perf_counter() - started,
        )


def mixing_sweep(scenario: Scenario, ratios) -> pd.DataFrame:
    """F1 of each group's own model against the amount of out-of-group training data.

    Ratios beyond what the other groups hold are cut to "all of them", and run once.
    """
    rows = []
    sizes = scenario.train.meta[scenario.attribute].astype(str).value_counts()
    for group in sorted(sizes.index):
        most = (sizes.sum() - sizes[group]) / sizes[group]  # every out-of-group image
        reachable = sorted({min(float(r), most) for r in ratios})
        for ratio in tqdm(reachable, desc=f"mixing {group}", leave=False):
            report, _ = _report(scenario, Mixing(group, ratio))
            rows.append(per_group(report, scenario.attribute, metrics=("f1",), ratio=ratio))
    return pd.concat(rows, ignore_index=True)


def pooled_mixing(swept: pd.DataFrame) -> pd.DataFrame:
    """The mixing curves of several seeds pooled point by point (``mixing_sweep`` tables + seed).

    A ratio cut to "all of them" differs a little between seeds (3.99 or 4.0), so seeds are
    pooled at each group's k-th ratio, placed at their mean ratio: mean F1 and its seed-level
    95% t interval (``verdicts.pool_seeds``).
    """
    swept = swept.sort_values(["seed", "group", "metric", "ratio"])
    swept = swept.assign(point=swept.groupby(["seed", "group", "metric"]).cumcount())
    pooled = pool_seeds(swept, by=["group", "metric", "point"]).drop(columns="verdict")
    ratios = swept.groupby(["group", "metric", "point"], as_index=False)["ratio"].mean()
    return pooled.merge(ratios, on=["group", "metric", "point"]).drop(columns="point")
