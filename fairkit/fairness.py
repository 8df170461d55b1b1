"""Group metrics over fairlearn's MetricFrame, fairness gaps and their bootstrap intervals.

Point estimates come from fairlearn (``MetricFrame`` for per-group values, its own
``equalized_odds_difference``, ``equal_opportunity_difference`` and
``demographic_parity_difference`` for gaps). The bootstrap resamples *patients* (a cluster
bootstrap), which fairlearn's row bootstrap cannot do; each replicate recomputes the same numbers
from sample-weighted confusion counts, vectorised over replicates (hand-written for speed: a
MetricFrame per replicate is ~100x slower). Tests check that both paths agree.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from functools import partial
from itertools import combinations

import numpy as np
import pandas as pd
from fairlearn.metrics import (
    MetricFrame,
    count,
    demographic_parity_difference,
    equal_opportunity_difference,
    equalized_odds_difference,
    false_negative_rate,
    false_positive_rate,
    selection_rate,
)
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from fairkit.bootstrap import (
    ECE_BINS,
    centred_interval,
    gap_replicates,
    patient_weights,
    sample_fingerprint,
    weighted_auroc_ece,
    weighted_rates,
)

RATE_METRICS = ("accuracy", "precision", "recall", "f1", "fpr", "fnr", "selection_rate")
METRICS = (*RATE_METRICS, "auroc", "ece")
HIGHER_IS_BETTER = {"accuracy", "precision", "recall", "f1", "auroc"}
UNKNOWN = "unknown"  # the group of rows without a value of a protected attribute


class GroupWarning(UserWarning):
    """A group too small to define a metric (empty, or only one class)."""


class UnknownGroupWarning(UserWarning):
    """Rows without a value of a protected attribute, reported as the group ``unknown``."""


# --------------------------------------------------------------------------- checked input


def score_classes(predictions: pd.DataFrame) -> list[str]:
    """The classes named by the ``score_<class>`` columns, in their order (the codes of y_true)."""
    classes = [c.removeprefix("score_") for c in predictions if c.startswith("score_")]
    if len(classes) < 2:
        found = f"only score_{classes[0]}" if classes else "no score_<class> columns"
        raise KeyError(
            f"predictions table has {found}; expected one per class (at least two) among "
            f"its columns {', '.join(map(str, predictions.columns))}"
        )
    return classes


def _check_scores(scores: pd.Series) -> None:
    """Refuse scores that are not probabilities: not numbers, NaN, or outside [0, 1]."""
    if not pd.api.types.is_numeric_dtype(scores) or pd.api.types.is_bool_dtype(scores):
        raise ValueError(f"{scores.name} must hold probabilities; found dtype {scores.dtype}")
    values = scores.to_numpy(dtype=float, na_value=np.nan)
    missing = np.isnan(values)
    if missing.any():
        raise ValueError(
            f"{scores.name}: {missing.sum()} of {len(values)} scores are NaN "
            f"(first at rows {list(scores.index[missing][:5])})"
        )
    outside = (values < 0) | (values > 1)
    if outside.any():
        raise ValueError(
            f"{scores.name}: {outside.sum()} of {len(values)} scores are outside [0, 1] (from "
            f"{values.min():.3g} to {values.max():.3g}); the report needs probabilities, not logits"
        )


def _label_codes(y_true: pd.Series, classes: list[str]) -> np.ndarray:
    """``y_true`` as class codes: codes 0..k-1 as they are, class names by their place."""
    if pd.api.types.is_numeric_dtype(y_true):
        codes = y_true.to_numpy(dtype=float, na_value=np.nan)
        known = np.isin(codes, np.arange(len(classes)))
    else:
        codes = y_true.map({name: k for k, name in enumerate(classes)}).to_numpy(
            dtype=float, na_value=np.nan
        )
        known = ~np.isnan(codes)
    if not known.all():
        counts = y_true[~known].value_counts(dropna=False)
        shown = ", ".join(f"{_plain(v)!r} in {n}" for v, n in counts.head(5).items())
        raise ValueError(
            f"y_true: {(~known).sum()} of {len(codes)} labels are outside the classes {classes} "
            f"(codes 0..{len(classes) - 1} in the order of the score_<class> columns, or the "
            f"names); found {shown} rows"
        )
    return codes.astype(int)


def _plain(value):
    """A numpy scalar as the Python value it holds, for readable messages."""
    return value.item() if isinstance(value, np.generic) else value


def checked_labels(predictions: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    """The classes and ``y_true`` as their codes, after refusing what no report can read.

    Refused: an empty table, no ``y_true`` or ``score_<class>`` columns, scores that are not
    probabilities, and labels that are neither a class's code nor its name.
    """
    if len(predictions) == 0:
        raise ValueError("predictions table is empty (0 rows); nothing to report")
    if "y_true" not in predictions:
        raise KeyError(
            f"predictions table has no column 'y_true'; found {', '.join(map(str, predictions))}"
        )
    classes = score_classes(predictions)
    for name in classes:
        _check_scores(predictions[f"score_{name}"])
    return classes, _label_codes(predictions["y_true"], classes)


def binary_labels(predictions: pd.DataFrame, positive: str) -> np.ndarray:
    """``y_true`` as 1 (class ``positive``) or 0 (any other class), after ``checked_labels``."""
    _, codes = checked_labels(predictions)
    return (codes == class_index(predictions, positive)).astype(int)


def given_decisions(predictions: pd.DataFrame) -> np.ndarray:
    """The ``decision`` column that post-processing left, as 0/1; any other value refused."""
    decisions = predictions["decision"].to_numpy()
    bad = ~np.isin(decisions, [0, 1])  # NaN, 0.7, "yes" and True-likes other than 0/1 included
    if bad.any():
        found = sorted({repr(v) for v in decisions[bad]})[:5]
        raise ValueError(
            f"decision: {bad.sum()} of {len(decisions)} values are not 0 or 1; found {', '.join(found)}"
        )
    return decisions.astype(int)


# --------------------------------------------------------------------------- thresholds


def positive_scores(predictions: pd.DataFrame, positive: str) -> np.ndarray:
    """The score column of the positive class."""
    column = f"score_{positive}"
    if column not in predictions:
        scores = [c for c in predictions if c.startswith("score_")]
        raise KeyError(f"no column {column!r}; the predictions have {scores}")
    return predictions[column].to_numpy()


def choose_threshold(val_predictions: pd.DataFrame, *, positive: str, criterion="youden") -> float:
    """Pick the decision threshold on *validation* predictions (Youden's J or best F1)."""
    y = binary_labels(val_predictions, positive)
    scores = positive_scores(val_predictions, positive)
    if len(np.unique(y)) < 2:
        raise ValueError("the validation split has one class only; no threshold can be chosen")
    if criterion == "youden":
        fpr, tpr, thresholds = roc_curve(y, scores)
        return float(np.clip(thresholds[np.argmax(tpr - fpr)], 0, 1))
    if criterion == "f1":
        candidates = np.unique(scores)
        f1s = [f1_score(y, scores >= t, zero_division=0) for t in candidates]
        return float(candidates[int(np.argmax(f1s))])
    raise ValueError(f"criterion must be 'youden' or 'f1'; got {criterion!r}")


def class_index(predictions: pd.DataFrame, positive: str) -> int:
    """The code of class ``positive`` in ``y_true``: its place among the score columns."""
    classes = score_classes(predictions)
    if positive not in classes:
        raise KeyError(f"positive class {positive!r} is not among the scored classes {classes}")
    return classes.index(positive)


# --------------------------------------------------------------------------- point estimates


def _ece(y_true, y_score) -> float:
    """Expected calibration error of the positive-class score, 10 equal-width bins."""
    bins = np.minimum((np.asarray(y_score) * ECE_BINS).astype(int), ECE_BINS - 1)
    total = np.bincount(bins, minlength=ECE_BINS)
    conf = np.bincount(bins, weights=y_score, minlength=ECE_BINS)
    hits = np.bincount(bins, weights=y_true, minlength=ECE_BINS)
    return float(np.abs(hits - conf).sum() / max(total.sum(), 1))


def auroc(y_true, y_score) -> float:
    """Binary AUROC, NaN (not an error) when ``y_true`` holds one class only."""
    return roc_auc_score(y_true, y_score) if len(np.unique(y_true)) == 2 else np.nan


def _metric_functions():
    zero = {"zero_division": np.nan}
    return {
        "accuracy": accuracy_score,
        "precision": lambda y, p: precision_score(y, p, **zero),
        "recall": lambda y, p: recall_score(y, p, **zero),
        "f1": lambda y, p: f1_score(y, p, **zero),
        "fpr": false_positive_rate,
        "fnr": false_negative_rate,
        "selection_rate": selection_rate,
        "count": count,
    }


def _binary_frame(y_true, y_pred, y_score, groups: pd.DataFrame) -> pd.DataFrame:
    """Per-group metrics of a binary task from fairlearn's MetricFrame (point estimates)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame = MetricFrame(
            metrics=_metric_functions(), y_true=y_true, y_pred=y_pred, sensitive_features=groups
        )
        scored = MetricFrame(
            metrics={"auroc": auroc, "ece": _ece},
            y_true=y_true,
            y_pred=y_score,
            sensitive_features=groups,
        )
    return pd.concat([frame.by_group, scored.by_group], axis=1)


def _gaps(y_true, y_pred, groups: pd.Series) -> dict[str, float]:
    """Fairness gaps from fairlearn's own functions."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "equal_opportunity": equal_opportunity_difference(
                y_true, y_pred, sensitive_features=groups
            ),
            "equalized_odds": equalized_odds_difference(y_true, y_pred, sensitive_features=groups),
            "equalized_odds_mean": equalized_odds_difference(
                y_true, y_pred, sensitive_features=groups, agg="mean"
            ),
            "demographic_parity": demographic_parity_difference(
                y_true, y_pred, sensitive_features=groups
            ),
        }


# --------------------------------------------------------------------------- the report


@dataclass
class Report:
    """A tidy fairness report: per-group metrics and gaps with 95% bootstrap intervals.

    Attributes:
        by_group: rows (attribute, group, metric, value, lo, hi, n).
        gaps: rows (attribute, metric, value, lo, hi): fairlearn gaps, worst-group values, and
            max-min differences of every metric.
        replicates: bootstrap replicates, (attribute, metric) -> array for the gaps and
            (attribute, group, metric) -> array per group, so that two reports on the same
            test set give paired intervals (``verdicts.paired_difference``).
        threshold: the decision threshold that was used (chosen on validation data).
        sample: fingerprint of the resampled patients, n_boot and seed; reports pair only
            when theirs match.
    """

    by_group: pd.DataFrame
    gaps: pd.DataFrame
    replicates: dict = field(repr=False)
    threshold: float | None
    sample: str = ""

    def value(self, metric: str, *, attribute: str | None = None, group=None) -> float:
        """Look up one number: a gap (no group) or a group's metric."""
        if group is None:
            rows = self.gaps[(self.gaps["metric"] == metric)]
            rows = rows if attribute is None else rows[rows["attribute"] == attribute]
        else:
            rows = self.by_group[
                (self.by_group["metric"] == metric) & (self.by_group["group"] == group)
            ]
            rows = rows if attribute is None else rows[rows["attribute"] == attribute]
        if len(rows) != 1:
            raise KeyError(
                f"{len(rows)} rows match metric={metric!r} attribute={attribute!r} group={group!r}"
            )
        return float(rows["value"].iloc[0])


def _warn_small_groups(y, groups: pd.Series, attribute: str) -> None:
    for group, labels in pd.Series(y).groupby(groups.to_numpy()):
        if len(labels) == 0:
            warnings.warn(
                f"{attribute}={group!r} is empty: its metrics are NaN", GroupWarning, stacklevel=3
            )
        elif labels.nunique() < 2:
            warnings.warn(
                f"{attribute}={group!r} has only class {labels.iloc[0]} ({len(labels)} samples): "
                "recall, FPR/FNR and AUROC that need the other class are NaN",
                GroupWarning,
                stacklevel=3,
            )


def _known_or_unknown(values: pd.Series) -> pd.Series:
    """A protected attribute as text, rows without a value as the group ``unknown`` (warned)."""
    missing = values.isna()
    if missing.any():
        warnings.warn(
            f"{missing.sum()} of {len(values)} rows have no {values.name}: reported as the "
            f"group {UNKNOWN!r}",
            UnknownGroupWarning,
            stacklevel=4,
        )
    return values.astype(object).where(~missing, UNKNOWN).astype(str)


def _attributes(predictions: pd.DataFrame, groups: list[str], intersections: bool):
    """Each attribute, then each pair as an intersection column 'a x b'."""
    missing = [g for g in groups if g not in predictions]
    if missing:
        raise KeyError(f"predictions have no group column {missing}")
    columns = {g: _known_or_unknown(predictions[g]) for g in groups}
    if intersections:
        for a, b in combinations(groups, 2):
            columns[f"{a} x {b}"] = columns[a] + " & " + columns[b]
    return columns


def _check_n_boot(n_boot) -> None:
    """Refuse a replicate count that is not a whole number >= 0; warn when it is 0."""
    if isinstance(n_boot, bool) or not isinstance(n_boot, int | np.integer) or n_boot < 0:
        raise ValueError(f"n_boot must be a whole number >= 0; got {n_boot!r}")
    if n_boot == 0:
        warnings.warn(
            "n_boot=0: no bootstrap replicates, so every interval is NaN (point estimates only)",
            UserWarning,
            stacklevel=3,
        )


def binary_report(
    predictions: pd.DataFrame,
    *,
    groups: list[str],
    positive: str,
    threshold: float,
    n_boot: int = 200,
    seed: int = 0,
    intersections: bool = True,
    patient_column: str = "patient_id",
) -> Report:
    """The report of one binary task: ``positive`` against the rest at ``threshold``."""
    y = binary_labels(predictions, positive)
    _check_n_boot(n_boot)
    s = positive_scores(predictions, positive)
    # Post-processing (e.g. fairlearn's ThresholdOptimizer) leaves its own decisions.
    p = given_decisions(predictions) if "decision" in predictions else (s >= threshold).astype(int)
    patients = (
        predictions[patient_column].to_numpy()
        if patient_column in predictions
        else np.arange(len(predictions))
    )
    # Row 0 has unit weights (the sample itself), so the arrays are never empty; dropped below.
    weights = np.vstack([np.ones(len(predictions)), patient_weights(patients, n_boot, seed)])
    rows, gap_rows, replicates = [], [], {}
    for attribute, column in _attributes(predictions, groups, intersections).items():
        _warn_small_groups(y, column, attribute)
        point = _binary_frame(y, p, s, column.to_frame(attribute))
        codes, names = pd.factorize(column, sort=True)
        boot = weighted_rates(y, p, s, codes, len(names), weights)
        boot["auroc"], boot["ece"] = weighted_auroc_ece(y, s, codes, len(names), weights)
        boot = {metric: values[1:] for metric, values in boot.items()}
        for metric in METRICS:
            lo, hi = np.clip(  # every per-group metric is a rate, an AUROC or an ECE in [0, 1]
                centred_interval(point.loc[names, metric].to_numpy(float), boot[metric]), 0, 1
            )
            for k, name in enumerate(names):
                replicates[(attribute, str(name), metric)] = boot[metric][:, k]
                rows.append(
                    (
                        attribute,
                        name,
                        metric,
                        point.loc[name, metric],
                        _at(lo, k),
                        _at(hi, k),
                        point.loc[name, "count"],
                    )
                )
        for metric, value in _gaps(y, p, column).items():
            rep = gap_replicates(metric, boot)
            replicates[(attribute, metric)] = rep
            gap_rows.append((attribute, metric, value, *_gap_interval(value, rep)))
        for metric in METRICS:
            values = point.loc[names, metric].astype(float)
            worst = values.min() if metric in HIGHER_IS_BETTER else values.max()
            rep_worst = (
                np.nanmin(boot[metric], 1)
                if metric in HIGHER_IS_BETTER
                else np.nanmax(boot[metric], 1)
            )
            rep_gap = np.nanmax(boot[metric], 1) - np.nanmin(boot[metric], 1)
            replicates[(attribute, f"worst_{metric}")] = rep_worst
            replicates[(attribute, f"gap_{metric}")] = rep_gap
            gap = values.max() - values.min()
            gap_rows.append(
                (attribute, f"worst_{metric}", worst, *centred_interval(worst, rep_worst))
            )
            gap_rows.append((attribute, f"gap_{metric}", gap, *_gap_interval(gap, rep_gap)))
    by_group = pd.DataFrame(
        rows, columns=["attribute", "group", "metric", "value", "lo", "hi", "n"]
    )
    gaps = pd.DataFrame(gap_rows, columns=["attribute", "metric", "value", "lo", "hi"])
    return Report(by_group, gaps, replicates, threshold, sample_fingerprint(patients, n_boot, seed))


def _gap_interval(gap: float, replicates: np.ndarray) -> tuple[float, float]:
    """``centred_interval`` of a gap, floored at zero (a max - min gap is never negative)."""
    lo, hi = centred_interval(gap, replicates)
    return max(lo, 0.0), hi


def _at(array, k):
    return float(array[k]) if np.ndim(array) else float(array)


def report(
    predictions: pd.DataFrame,
    *,
    groups: list[str],
    thresholds: dict[str, float] | float | None = None,
    positive: str | None = None,
    n_boot: int = 200,
    seed: int = 0,
    intersections: bool = True,
) -> Report:
    """Per-group and intersectional metrics, gaps and bootstrap 95% intervals.

    Args:
        predictions: the predictions table (``y_true``, ``score_<class>``, group columns).
        groups: protected attributes; pairs of them are reported as intersections too.
        thresholds: decision threshold(s) chosen on validation data (``choose_threshold``);
            per class for one-vs-rest, or one number for a binary task. None: 0.5.
        positive: for a binary task, the positive class. None with more than two classes:
            one-vs-rest for every class, then macro averages (class "macro").
        n_boot: bootstrap replicates (patients resampled).
        seed: seed of the bootstrap.
        intersections: also report every pair of attributes.

    Rows without a value of an attribute form the group ``unknown`` (with a warning); what no
    report can read (see ``checked_labels``) and a negative ``n_boot`` are refused.
    """
    classes, _ = checked_labels(predictions)
    if positive is not None or len(classes) == 2:
        positive = positive or classes[1]
        threshold = (
            thresholds
            if isinstance(thresholds, float | int)
            else (thresholds or {}).get(positive, 0.5)
        )
        return binary_report(
            predictions, groups=groups, positive=positive, threshold=float(threshold),
            n_boot=n_boot, seed=seed, intersections=intersections,
        )  # fmt: skip
    thresholds = thresholds or {}
    parts = [
        binary_report(
            predictions, groups=groups, positive=c, threshold=thresholds.get(c, 0.5),
            n_boot=n_boot, seed=seed, intersections=intersections,
        )
        for c in classes
    ]  # fmt: skip
    return _macro(parts, classes)


def _macro(parts: list[Report], classes: list[str]) -> Report:
    """One-vs-rest reports joined, plus their macro average (class ``macro``)."""
    by_group = pd.concat([r.by_group.assign(cls=c) for r, c in zip(parts, classes, strict=True)])
    gaps = pd.concat([r.gaps.assign(cls=c) for r, c in zip(parts, classes, strict=True)])
    keys = ["attribute", "group", "metric"]
    macro_groups = (
        by_group.groupby(keys, sort=False)[["value", "lo", "hi", "n"]].mean().reset_index()
    )
    replicates = {
        k: np.nanmean([r.replicates[k] for r in parts], axis=0) for k in parts[0].replicates
    }
    macro_gaps = gaps.groupby(["attribute", "metric"], sort=False)["value"].mean().reset_index()
    bounds = [
        centred_interval(v, replicates[(a, m)])
        for a, m, v in zip(
            macro_gaps["attribute"], macro_gaps["metric"], macro_gaps["value"], strict=True
        )
    ]
    macro_gaps[["lo", "hi"]] = bounds
    return Report(
        pd.concat([by_group, macro_groups.assign(cls="macro")], ignore_index=True),
        pd.concat([gaps, macro_gaps.assign(cls="macro")], ignore_index=True),
        replicates,
        None,
        parts[0].sample,
    )


def group_metrics(predictions: pd.DataFrame, *, sensitive_features: str) -> MetricFrame:
    """Accuracy, macro recall and macro F1 of a multi-class prediction per group (MetricFrame).

    The quick look of the quickstart; ``report`` is the full instrument with intervals.
    """
    for column in ("y_true", "y_pred", sensitive_features):
        if column not in predictions:
            raise KeyError(f"predictions table has no column {column!r}")
    return MetricFrame(
        metrics={
            "accuracy": accuracy_score,
            "macro_recall": partial(recall_score, average="macro", zero_division=0),
            "macro_f1": partial(f1_score, average="macro", zero_division=0),
            "count": count,
        },
        y_true=predictions["y_true"],
        y_pred=predictions["y_pred"],
        sensitive_features=predictions[sensitive_features],
    )


def tidy(frame: MetricFrame) -> pd.DataFrame:
    """A MetricFrame's per-group values as a long table (group, metric, value)."""
    by_group = frame.by_group.drop(columns="count", errors="ignore")
    return by_group.reset_index().melt(
        id_vars=by_group.index.names, var_name="metric", value_name="value"
    )


def metric_rows(
    reports: dict[str, Report], *, attribute: str, metrics, gap_metrics
) -> pd.DataFrame:
    """Per method and group of ``attribute``: ``metrics`` with 95% intervals, and the gaps.

    One tidy table of several reports (``method`` names each): the ``by_group`` rows of
    ``metrics`` and the ``gaps`` rows of ``gap_metrics`` (group ``all``), as chapters save them
    in ``metrics.csv``.
    """
    rows = []
    for name, rep in reports.items():
        by = rep.by_group
        by = by[(by["attribute"] == attribute) & by["metric"].isin(metrics)]
        gaps = rep.gaps[(rep.gaps["attribute"] == attribute) & rep.gaps["metric"].isin(gap_metrics)]
        rows += [by.assign(method=name), gaps.assign(method=name, group="all")]
    return pd.concat(rows, ignore_index=True)
