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

from fairkit import seeds
from fairkit.data import Cohort
from fairkit.experiment import Scenario
from fairkit.fairness import Report, auroc, class_index, positive_scores
from fairkit.methods import MethodPredictions, Spare
from fairkit.methods.spare import VARIANTS
from fairkit.models import n_stages
from fairkit.training import fit, predict
from fairkit.verdicts import verdict

COMPARED = ("erm", "in_group", "resample", "reweight", "groupdro", "threshold", "spare")
PER_GROUP_METRICS = ("precision", "recall", "f1")
GAP_METRICS = ("equal_opportunity", "equalized_odds")


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


def compare(
    scenario: Scenario, spare: Spare, methods=COMPARED
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-group precision/recall/F1 and the gaps of SPARE and every baseline on a scenario."""
    groups, gap_rows = [], []
    for method in tqdm(methods, desc="methods", leave=False):
        report, predictions = _report(scenario, spare if method == "spare" else method)
        labels = {"method": method, "seconds": predictions.seconds}
        groups.append(per_group(report, scenario.attribute, **labels))
        gap_rows.append(gaps(report, scenario.attribute, **labels))
    return pd.concat(groups, ignore_index=True), pd.concat(gap_rows, ignore_index=True)


def ablation(scenario: Scenario, spare: Spare, variants=VARIANTS) -> pd.DataFrame:
    """Per-group F1 (and precision, recall) of every weighting variant."""
    rows = [
        per_group(_report(scenario, replace(spare, variant=v))[0], scenario.attribute, variant=v)
        for v in tqdm(variants, desc="ablation", leave=False)
    ]
    return pd.concat(rows, ignore_index=True)


def sharing_curve(scenario: Scenario, spare: Spare, share=None) -> pd.DataFrame:
    """Per-group F1, training seconds and parameter count against the number of shared stages."""
    total = n_stages(scenario.make_model)
    rows = []
    for k in tqdm(range(total + 1) if share is None else share, desc="sharing", leave=False):
        report, predictions = _report(scenario, replace(spare, share_stages=k))
        f1 = per_group(report, scenario.attribute, metrics=("f1",))
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


def temperature_sweep(scenario: Scenario, spare: Spare, temperatures) -> tuple[pd.DataFrame, Spare]:
    """SPARE at each temperature, and the one with the best worst-group validation AUROC.

    The table holds, per temperature and group, the validation AUROC that decides and the
    test F1 (95% CI) that it leads to; the test set plays no part in the choice.
    """
    if not len(temperatures):
        raise ValueError("temperature_sweep needs at least one temperature")
    rows = []
    for t in tqdm(temperatures, desc="temperature", leave=False):
        report, predictions = _report(scenario, replace(spare, temperature=float(t)))
        chosen_by = validation_auroc(predictions, scenario.attribute, scenario.positive)
        f1 = per_group(report, scenario.attribute, metrics=("f1",))
        rows.append(f1.assign(temperature=float(t), val_auroc=f1["group"].map(chosen_by)))
    table = pd.concat(rows, ignore_index=True)
    best = float(table.groupby("temperature")["val_auroc"].min().idxmax())
    return table.assign(chosen=table["temperature"] == best), replace(spare, temperature=best)


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


# --------------------------------------------------------------------------- findings


def findings(by_group: pd.DataFrame, ablation: pd.DataFrame, sharing: pd.DataFrame) -> pd.DataFrame:
    """Chapter 3's comparisons as rows, each worded by ``verdicts.verdict``.

    Rows (comparison, setting, group, a, b, a_value, a_lo, a_hi, b_value, b_lo, b_hi, verdict):
    SPARE against ERM and against every other baseline, per setting of ``by_group``
    (``compare``'s tables with a ``setting`` column); each ablation variant against full
    SPARE; each number of shared stages against independent models (0 shared). All on F1.
    """
    rows = []

    def add(comparison, setting, table, key, a, b):
        for group, cell in table.groupby("group", sort=False):
            first, second = (cell[cell[key] == name].iloc[0] for name in (a, b))
            rows.append(
                {
                    "comparison": comparison,
                    "setting": setting,
                    "group": group,
                    "a": a,
                    "b": b,
                    **{f"a_{k}": first[k] for k in ("value", "lo", "hi")},
                    **{f"b_{k}": second[k] for k in ("value", "lo", "hi")},
                    "verdict": verdict(first, second),
                }
            )

    f1 = by_group[by_group["metric"] == "f1"]
    for setting, table in f1.groupby("setting", sort=False):
        for method in table["method"].unique():
            if method != "spare":
                add("method", setting, table, "method", "spare", method)
    variants = ablation[ablation["metric"] == "f1"]
    for variant in variants["variant"].unique():
        if variant != "spare":
            add("ablation", "skin type", variants, "variant", variant, "spare")
    for k in sharing["shared"].unique():
        if k != 0:
            add("sharing", "skin type", sharing, "shared", k, 0)
    return pd.DataFrame(rows)
