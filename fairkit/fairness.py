"""Group metrics over fairlearn's MetricFrame, fairness gaps and their bootstrap intervals.

Point estimates come from fairlearn's ``MetricFrame`` per group. A rate a group cannot define
(recall in a group without positives) is NaN, where fairlearn's rate functions return 0, and the
gaps (fairlearn's definitions: max minus min over groups) leave such groups out, so an undefined
rate never reads as a real one. The bootstrap resamples *patients* (a cluster bootstrap), which
fairlearn's row bootstrap cannot do; each replicate recomputes the same numbers from
sample-weighted confusion counts, vectorised over replicates (hand-written for speed: a
MetricFrame per replicate is ~100x slower). Tests check that both paths agree.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from itertools import combinations

import numpy as np
import pandas as pd
from fairlearn.metrics import (
    MetricFrame,
    count,
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
    gap_values,
    patient_weights,
    sample_fingerprint,
    spread,
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


def _integer_names(classes: list[str]) -> bool:
    """Whether every class is named by a whole number (``score_0``, ``score_1``)."""
    return all(re.fullmatch(r"-?\d+", name) for name in classes)


def _label_codes(y_true: pd.Series, classes: list[str]) -> np.ndarray:
    """``y_true`` as class codes (places among the score columns), each label read by its name.

    Labels that are class names (``"pos"``) and numbers that name a class (``1`` for
    ``score_1``, whatever the columns' order) are read by name; numbers beside non-numeric
    names (``0``/``1`` beside ``score_neg``, ``score_pos``) are the classes' places.
    """
    if pd.api.types.is_bool_dtype(y_true):
        raise ValueError(
            f"y_true holds True/False; give each row's class as a code 0..{len(classes) - 1} "
            f"or a name among {classes}"
        )
    if pd.api.types.is_numeric_dtype(y_true) and not _integer_names(classes):
        codes = y_true.to_numpy(dtype=float, na_value=np.nan)
        known = np.isin(codes, np.arange(len(classes)))
    else:
        numeric = pd.api.types.is_numeric_dtype(y_true)
        by_name = {int(c) if numeric else c: k for k, c in enumerate(classes)}
        codes = y_true.map(by_name).to_numpy(dtype=float, na_value=np.nan)
        known = ~np.isnan(codes)
    if not known.all():
        counts = y_true[~known].value_counts(dropna=False)
        shown = ", ".join(f"{_plain(v)!r} in {n}" for v, n in counts.head(5).items())
        raise ValueError(
            f"y_true: {(~known).sum()} of {len(codes)} labels are outside the classes {classes} "
            f"(a class's name, or its place 0..{len(classes) - 1} among the score_<class> "
            f"columns); found {shown} rows"
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


def choose_threshold(
    val_predictions: pd.DataFrame,
    *,
    positive: str,
    criterion="youden",
    mix: tuple[str, Mapping[str, float]] | None = None,
) -> float:
    """Pick the decision threshold on *validation* predictions (Youden's J or best F1).

    ``mix=(attribute, shares)`` weighs the validation rows so that the groups of ``attribute``
    have the test's ``shares`` (e.g. balanced): the operating point the test set will meet.
    Chosen on a validation set of 10% old patients, MRI's threshold suited the young, and the
    old, whose scores run higher with age, sat at accuracy 0.3 (below chance) with AUROC 0.7.
    """
    y = binary_labels(val_predictions, positive)
    scores = positive_scores(val_predictions, positive)
    if len(np.unique(y)) < 2:
        raise ValueError("the validation split has one class only; no threshold can be chosen")
    weight = None if mix is None else group_mix_weights(val_predictions, *mix)
    if criterion == "youden":
        fpr, tpr, thresholds = roc_curve(y, scores, sample_weight=weight)
        return float(np.clip(thresholds[np.argmax(tpr - fpr)], 0, 1))
    if criterion == "f1":
        candidates = np.unique(scores)
        f1s = [f1_score(y, scores >= t, zero_division=0, sample_weight=weight) for t in candidates]
        return float(candidates[int(np.argmax(f1s))])
    raise ValueError(f"criterion must be 'youden' or 'f1'; got {criterion!r}")


def group_mix_weights(
    predictions: pd.DataFrame, attribute: str, shares: Mapping[str, float]
) -> np.ndarray:
    """Row weights that give each group of ``attribute`` its share in ``shares`` (sum 1)."""
    if attribute not in predictions:
        raise KeyError(f"the predictions have no {attribute!r} column to weigh groups by")
    groups = predictions[attribute].astype(str)
    seen = groups.value_counts(normalize=True)
    wanted = {str(g): float(v) for g, v in dict(shares).items()}
    unknown = sorted(set(seen.index) - set(wanted))
    if unknown:
        raise ValueError(f"no test share given for the {attribute} groups {unknown}")
    return groups.map(lambda g: wanted[g] / seen[g]).to_numpy(float)


def class_index(predictions: pd.DataFrame, positive: str) -> int:
    """The code of class ``positive`` in ``y_true``: its place among the score columns."""
    classes = score_classes(predictions)
    if positive not in classes:
        raise KeyError(f"positive class {positive!r} is not among the scored classes {classes}")
    return classes.index(positive)


# --------------------------------------------------------------------------- point estimates

# The per-group metrics each fairlearn gap is built on: a gap leaves out the groups where one
# of them is undefined, and is itself undefined when fewer than two groups remain.
GAP_NEEDS = {
    "equal_opportunity": ("recall",),
    "equalized_odds": ("recall", "fpr"),
    "equalized_odds_mean": ("recall", "fpr"),
    "demographic_parity": ("selection_rate",),
}


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


def _recall(y_true, y_pred, *, pos_label: int = 1) -> float:
    """The share of class ``pos_label`` found; NaN, not fairlearn's 0, in a group without it."""
    return recall_score(y_true, y_pred, pos_label=pos_label, zero_division=np.nan)


def _metric_functions():
    zero = {"zero_division": np.nan}
    return {
        "accuracy": accuracy_score,
        "precision": partial(precision_score, **zero),
        "recall": _recall,
        "f1": partial(f1_score, **zero),
        "fpr": lambda y, p: 1 - _recall(y, p, pos_label=0),
        "fnr": lambda y, p: 1 - _recall(y, p),
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


def _why_undefined(y, p, column: pd.Series, positive: str) -> dict[str, tuple[str, list[str]]]:
    """Per group that cannot define some rates: what it lacks (the counts they divide by), them."""
    out = {}
    for name, rows in pd.Series(np.arange(len(y))).groupby(column.to_numpy()):
        yg, pg = y[rows.to_numpy()], p[rows.to_numpy()]
        no_pos, no_neg, no_decision = yg.sum() == 0, yg.sum() == len(yg), pg.sum() == 0
        undefined = {
            "recall": no_pos, "fnr": no_pos, "fpr": no_neg, "auroc": no_pos or no_neg,
            "precision": no_decision, "f1": no_pos and no_decision,
        }  # fmt: skip
        facts = {
            "no positives": no_pos,
            "no negatives": no_neg,
            "no positive decisions": no_decision,
        }
        if any(undefined.values()):
            lacks = "; ".join(f for f, holds in facts.items() if holds)
            why = f"{lacks} among its {len(yg)} samples ({positive!r} is positive)"
            out[name] = (why, [m for m, holds in undefined.items() if holds])
    return out


def _warn_undefined(undefined: dict[str, tuple[str, list[str]]], attribute: str) -> None:
    """One warning per group whose rates are undefined, naming them and why."""
    for group, (why, metrics) in undefined.items():
        warnings.warn(
            f"{attribute}={group!r}: {why}, so {', '.join(metrics)} "
            f"{'is' if len(metrics) == 1 else 'are'} undefined (NaN) and left out of every gap "
            "built on them",
            GroupWarning,
            stacklevel=4,
        )


def _needs(metric: str) -> tuple[str, ...]:
    """The per-group metrics a gap row is built on (``gap_recall`` and ``worst_recall``: recall)."""
    return GAP_NEEDS.get(metric) or (metric.removeprefix("gap_").removeprefix("worst_"),)


def _gap_reason(metric: str, values: pd.DataFrame) -> str:
    """Why a gap row is undefined: too few groups define what it is built on."""
    lacking = [m for m in _needs(metric) if values[m].notna().sum() < 2]
    if metric.startswith("worst_"):
        return f"no group defines {', '.join(_needs(metric))}"
    return f"fewer than two groups define {', '.join(lacking)}"


# --------------------------------------------------------------------------- the report

UNDEFINED = ["attribute", "group", "metric", "reason"]


@dataclass
class Report:
    """A tidy fairness report: per-group metrics and gaps with 95% bootstrap intervals.

    Attributes:
        by_group: rows (attribute, group, metric, value, lo, hi, n).
        gaps: rows (attribute, metric, value, lo, hi): fairlearn gaps, worst-group values, and
            max-min differences of every metric, each over the groups that define it.
        replicates: bootstrap replicates, (attribute, metric) -> array for the gaps and
            (attribute, group, metric) -> array per group, so that two reports on the same
            test set give paired intervals (``verdicts.paired_difference``).
        threshold: the decision threshold that was used (chosen on validation data).
        sample: fingerprint of the resampled patients, n_boot and seed; reports pair only
            when theirs match.
        undefined: rows (attribute, group, metric, reason) for every value or interval that is
            NaN, and every group left out of a gap (group ``all``: the gap row itself).
    """

    by_group: pd.DataFrame
    gaps: pd.DataFrame
    replicates: dict = field(repr=False)
    threshold: float | None
    sample: str = ""
    undefined: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=UNDEFINED))

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
    if isinstance(groups, str) or not all(isinstance(g, str) for g in groups):
        raise TypeError(f"groups must be a list of column names; got {groups!r}")
    missing = [g for g in groups if g not in predictions]
    if missing:
        raise KeyError(f"predictions have no group column {missing}")
    columns = {g: _known_or_unknown(predictions[g]) for g in groups}
    if intersections:
        for a, b in combinations(groups, 2):
            columns[f"{a} x {b}"] = columns[a] + " & " + columns[b]
    return columns


def _patients(predictions: pd.DataFrame, column: str) -> np.ndarray:
    """Each row's patient, the unit the bootstrap resamples (each row its own without a column).

    A missing id is refused: read as text, every NaN would become one patient named "nan".
    """
    if column not in predictions:
        return np.arange(len(predictions))
    missing = predictions[column].isna()
    if missing.any():
        raise ValueError(
            f"{column}: {missing.sum()} of {len(predictions)} rows have no patient id (first at "
            f"rows {list(predictions.index[missing][:5])}); give each image its patient"
        )
    return predictions[column].to_numpy()


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


def check_threshold(value, what: str = "threshold") -> float:
    """A decision threshold as a float, refused unless it is a number in [0, 1]."""
    number = isinstance(value, int | float | np.number) and not isinstance(value, bool | np.bool_)
    if not number or not 0 <= value <= 1:  # NaN fails the comparison
        raise ValueError(f"{what} must be a number in [0, 1]; got {value!r}")
    return float(value)


def checked_thresholds(thresholds, classes: list[str], *, used: list[str]) -> dict[str, float]:
    """One threshold per class in ``used``: a number for all, a dict by class name, or None (0.5).

    Refused: a dict naming a class that is not scored (a misspelling), one that leaves out a
    class in ``used``, and any threshold that is not a number in [0, 1].
    """
    if thresholds is None:
        return dict.fromkeys(used, 0.5)
    if isinstance(thresholds, dict):
        unknown = [name for name in thresholds if name not in classes]
        if unknown:
            raise ValueError(
                f"thresholds name classes that are not scored: {unknown}; the classes are {classes}"
            )
        missing = [name for name in used if name not in thresholds]
        if missing:
            which = "the positive class" if len(used) == 1 else "the classes"
            shown = repr(missing[0]) if len(used) == 1 else missing
            raise ValueError(f"thresholds: no threshold for {which} {shown}; got {thresholds}")
        return {c: check_threshold(thresholds[c], f"threshold of class {c!r}") for c in used}
    if isinstance(thresholds, bool | str) or not isinstance(thresholds, int | float | np.number):
        raise ValueError(
            f"thresholds must be a number or a dict of class name -> number; got {thresholds!r}"
        )
    return dict.fromkeys(used, check_threshold(thresholds))


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
    threshold = check_threshold(threshold)
    _check_n_boot(n_boot)
    s = positive_scores(predictions, positive)
    # Post-processing (e.g. fairlearn's ThresholdOptimizer) leaves its own decisions.
    p = given_decisions(predictions) if "decision" in predictions else (s >= threshold).astype(int)
    patients = _patients(predictions, patient_column)
    # Row 0 has unit weights (the sample itself), so the arrays are never empty; dropped below.
    weights = np.vstack([np.ones(len(predictions)), patient_weights(patients, n_boot, seed)])
    no_interval = "n_boot=0: no bootstrap replicates" if n_boot == 0 else (
        "no bootstrap replicate defines it"
    )  # fmt: skip
    rows, gap_rows, replicates, undefined = [], [], {}, []
    for attribute, column in _attributes(predictions, groups, intersections).items():
        reasons = _why_undefined(y, p, column, positive)
        _warn_undefined(reasons, attribute)
        point = _binary_frame(y, p, s, column.to_frame(attribute))
        codes, names = pd.factorize(column, sort=True)
        boot = weighted_rates(y, p, s, codes, len(names), weights)
        boot["auroc"], boot["ece"] = weighted_auroc_ece(y, s, codes, len(names), weights)
        boot = {metric: values[1:] for metric, values in boot.items()}
        values = point.loc[names, list(METRICS)].astype(float)
        for metric in METRICS:
            lo, hi = np.clip(  # every per-group metric is a rate, an AUROC or an ECE in [0, 1]
                centred_interval(values[metric].to_numpy(), boot[metric]), 0, 1
            )
            for k, name in enumerate(names):
                replicates[(attribute, str(name), metric)] = boot[metric][:, k]
                value, n = values.loc[name, metric], point.loc[name, "count"]
                rows.append((attribute, name, metric, value, _at(lo, k), _at(hi, k), n))
                if np.isnan(value):
                    undefined.append((attribute, name, metric, reasons[name][0]))
                elif np.isnan(_at(lo, k)):
                    undefined.append((attribute, name, metric, no_interval))
        per_group = {m: values[m].to_numpy()[None] for m in METRICS}
        for metric, value, rep in _gap_statistics(per_group, boot):
            replicates[(attribute, metric)] = rep
            lo, hi = (
                centred_interval(value, rep) if metric.startswith("worst_")
                else _gap_interval(value, rep)
            )  # fmt: skip
            gap_rows.append((attribute, metric, value, lo, hi))
            for name in names:
                lacking = [m for m in _needs(metric) if np.isnan(values.loc[name, m])]
                if lacking:
                    undefined.append((attribute, name, metric, f"left out: {reasons[name][0]}"))
            if np.isnan(value):
                undefined.append((attribute, "all", metric, _gap_reason(metric, values)))
            elif np.isnan(lo):
                undefined.append((attribute, "all", metric, no_interval))
    by_group = pd.DataFrame(
        rows, columns=["attribute", "group", "metric", "value", "lo", "hi", "n"]
    )
    gaps = pd.DataFrame(gap_rows, columns=["attribute", "metric", "value", "lo", "hi"])
    return Report(
        by_group, gaps, replicates, threshold, sample_fingerprint(patients, n_boot, seed),
        pd.DataFrame(undefined, columns=UNDEFINED),
    )  # fmt: skip


def _gap_statistics(per_group: dict[str, np.ndarray], boot: dict[str, np.ndarray]):
    """Each gap row as (metric, point estimate, replicates): fairlearn's gaps, worst and spread.

    Both arguments map a metric to per-group values, one row per sample (the point estimate's
    one row, the bootstrap's replicates), so one definition serves both.
    """
    for metric in GAP_NEEDS:
        yield metric, float(gap_values(metric, per_group)[0]), gap_values(metric, boot)
    for metric in METRICS:
        worst = np.nanmin if metric in HIGHER_IS_BETTER else np.nanmax
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a row where no group defines it
            yield f"worst_{metric}", float(worst(per_group[metric], 1)[0]), worst(boot[metric], 1)
        yield f"gap_{metric}", float(spread(per_group[metric])[0]), spread(boot[metric])


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
        thresholds: decision threshold(s) chosen on validation data (``choose_threshold``):
            one number for every class, or a dict by class name. None: 0.5.
        positive: for a binary task, the positive class. None with more than two classes:
            one-vs-rest for every class, then macro averages (class "macro").
        n_boot: bootstrap replicates (patients resampled).
        seed: seed of the bootstrap.
        intersections: also report every pair of attributes.

    Rows without a value of an attribute form the group ``unknown`` (with a warning); a rate a
    group cannot define (recall without positives) is NaN, left out of the gaps, and named in
    ``Report.undefined``. What no report can read (see ``checked_labels``), thresholds of
    classes that are not scored or outside [0, 1], and a negative ``n_boot`` are refused.
    """
    classes, _ = checked_labels(predictions)
    if positive is not None or len(classes) == 2:
        positive = positive or classes[1]
        class_index(predictions, positive)
        threshold = checked_thresholds(thresholds, classes, used=[positive])[positive]
        return binary_report(
            predictions, groups=groups, positive=positive, threshold=threshold,
            n_boot=n_boot, seed=seed, intersections=intersections,
        )  # fmt: skip
    chosen = checked_thresholds(thresholds, classes, used=classes)
    parts = [
        binary_report(
            predictions, groups=groups, positive=c, threshold=chosen[c],
            n_boot=n_boot, seed=seed, intersections=intersections,
        )
        for c in classes
    ]  # fmt: skip
    return _macro(parts, classes)


def _macro_rows(table: pd.DataFrame, keys: list[str], replicates: dict, *, per_group: bool):
    """The macro average of one-vs-rest rows, with intervals from the averaged replicates.

    Returns the macro rows and the ``undefined`` rows of those that average over some classes
    only, or over none, or have no interval.
    """
    rows, undefined = [], []
    for key, part in table.groupby(keys, sort=False):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            value = float(np.nanmean(part["value"])) if part["value"].notna().any() else np.nan
        metric = key[-1]
        lo, hi = centred_interval(value, replicates[key])
        if per_group:
            lo, hi = max(lo, 0.0), min(hi, 1.0)  # an average of rates stays in [0, 1]
        elif not metric.startswith("worst_"):
            lo = max(lo, 0.0)
        rows.append(
            (*key, value, lo, hi, *part["n"].iloc[:1]) if per_group else (*key, value, lo, hi)
        )
        where = (*key[:-1], key[-1]) if per_group else (key[0], "all", metric)
        lacking = part.loc[part["value"].isna(), "cls"].tolist()
        if np.isnan(value):
            undefined.append((*where, "undefined for every class"))
        elif lacking:
            undefined.append((*where, f"averaged over the classes that define it (not {lacking})"))
        if not np.isnan(value) and np.isnan(lo):
            undefined.append((*where, "no bootstrap replicate defines it"))
    return rows, undefined


def _macro(parts: list[Report], classes: list[str]) -> Report:
    """One-vs-rest reports joined, plus their macro average (class ``macro``)."""
    by_group = pd.concat([r.by_group.assign(cls=c) for r, c in zip(parts, classes, strict=True)])
    gaps = pd.concat([r.gaps.assign(cls=c) for r, c in zip(parts, classes, strict=True)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a replicate no class defines
        replicates = {
            k: np.nanmean([r.replicates[k] for r in parts], axis=0) for k in parts[0].replicates
        }
    group_rows, group_undefined = _macro_rows(
        by_group, ["attribute", "group", "metric"], replicates, per_group=True
    )
    gap_rows, gap_undefined = _macro_rows(
        gaps, ["attribute", "metric"], replicates, per_group=False
    )
    undefined = pd.concat(
        [
            *(r.undefined.assign(cls=c) for r, c in zip(parts, classes, strict=True)),
            pd.DataFrame(group_undefined + gap_undefined, columns=UNDEFINED).assign(cls="macro"),
        ],
        ignore_index=True,
    )
    return Report(
        pd.concat(
            [by_group, pd.DataFrame(group_rows, columns=by_group.columns[:-1]).assign(cls="macro")],
            ignore_index=True,
        ),
        pd.concat(
            [gaps, pd.DataFrame(gap_rows, columns=gaps.columns[:-1]).assign(cls="macro")],
            ignore_index=True,
        ),
        replicates,
        None,
        parts[0].sample,
        undefined,
    )


def lower_group(values: pd.Series, *, digits: int = 3) -> str | None:
    """The group with the lower value, or None when the values agree to ``digits`` decimals.

    For prose: a difference that rounds to zero at the precision shown is a tie, not a gap.
    """
    rounded = values.round(digits)
    return None if rounded.max() == rounded.min() else str(rounded.idxmin())


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
