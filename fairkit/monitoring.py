"""Deployment monitoring per protected group: a label-free performance estimate and its check.

After deployment the labels come late or never, so a group's performance is *estimated* from the
model's scores alone: NannyML's CBPE (confidence-based performance estimation) reads the
expected confusion matrix off calibrated scores, chunk by chunk. Each group gets its own
estimator, fitted on that group's reference predictions (labelled data from before the drift,
such as a labelled stationary stream), and its own alarm band: the
mean of the reference chunks' realised metric +- ``std_multiplier`` standard deviations. Where the
stream's labels are known (the causal model knows them), NannyML's ``PerformanceCalculator``
gives the realised metric on the same chunks, so every estimated alarm can be checked against a
realised one. Everything works on predictions tables (``y_true``, ``score_<class>``, metadata),
never on models. ``shifted_batches`` and ``stream_rows`` build a stream whose population drifts.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fairkit import fairness

METRICS = ("accuracy", "roc_auc", "f1")  # NannyML's names; all estimated by CBPE
TABLE_COLUMNS = [
    "group",
    "batch",
    "n",
    "estimated",
    "estimated_lo",
    "estimated_hi",
    "realised",
    "lower_threshold",
    "upper_threshold",
    "alarm",
    "realised_alarm",
]
SUMMARY_COLUMNS = [
    "group",
    "chunks",
    "false_alarm_rate",
    "detected",
    "delay",
    "agreement",
    "realised_detected",
]
_START = pd.Timestamp("2026-01-01")  # batch b is the day _START + b: one NannyML chunk per day
_TIME, _DECISION, _LABEL = "_monitor_time", "_monitor_decision", "_monitor_label"


@dataclass(frozen=True)
class Monitor:
    """Per-group, per-batch estimated and realised performance of a deployed model, with alarms.

    ``table`` has one row per (group, batch) of the stream: ``n`` rows, the CBPE ``estimated``
    metric with its sampling-error band (``estimated_lo``, ``estimated_hi``), the ``realised``
    metric from the true labels, the group's alarm band (``lower_threshold``,
    ``upper_threshold``), ``alarm`` (the estimate is outside the band) and ``realised_alarm``
    (the realised metric is).
    """

    table: pd.DataFrame
    metric: str
    attribute: str

    def alarms(self) -> pd.DataFrame:
        """The rows of ``table`` with an estimated alarm."""
        return self.table[self.table["alarm"]].reset_index(drop=True)

    def summary(self, *, onset: int | None) -> pd.DataFrame:
        """Per group, how well the estimated alarms tell a drift that starts at batch ``onset``.

        Args:
            onset: the first batch with a shifted population; None for a stationary stream, in
                which every chunk counts towards the false-alarm rate and nothing is to detect.

        Returns:
            One row per group: ``chunks``, ``false_alarm_rate`` (share of chunks before
            ``onset`` with an estimated alarm; NaN when there are none), ``detected`` (an
            estimated alarm at or after ``onset``), ``delay`` (batches from ``onset`` to the
            first such alarm; NaN if none), ``agreement`` (share of chunks where the estimated
            and the realised alarm agree) and ``realised_detected``.
        """
        rows = []
        for group, part in self.table.groupby("group", sort=False):
            after = (
                part["batch"] >= onset if onset is not None else pd.Series(False, index=part.index)
            )
            before = part[~after]
            first = part.loc[after & part["alarm"], "batch"].min()
            rows.append(
                {
                    "group": group,
                    "chunks": len(part),
                    "false_alarm_rate": float(before["alarm"].mean()) if len(before) else np.nan,
                    "detected": bool((after & part["alarm"]).any()),
                    "delay": float(first - onset) if pd.notna(first) else np.nan,
                    "agreement": float((part["alarm"] == part["realised_alarm"]).mean()),
                    "realised_detected": bool((after & part["realised_alarm"]).any()),
                }
            )
        return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


# --------------------------------------------------------------------------- checked input


def _check_table(
    table: pd.DataFrame, name: str, *, attribute: str, positive: str, batch_column: str
) -> list[str]:
    """Refuse a predictions table ``monitor`` cannot read; returns its classes (score columns)."""
    if not isinstance(table, pd.DataFrame) or len(table) == 0:
        raise ValueError(f"{name} must be a non-empty predictions DataFrame; got {table!r:.80}")
    needed = ["y_true", f"score_{positive}", attribute, batch_column]
    missing = [c for c in needed if c not in table]
    if missing:
        raise ValueError(
            f"{name} lacks columns {missing}; expected {needed}, found {list(map(str, table))}"
        )
    classes = [c.removeprefix("score_") for c in table if c.startswith("score_")]
    if len(classes) != 2:
        raise ValueError(
            f"{name}: monitoring is binary and needs two score_<class> columns; found {classes}"
        )
    scores = table[f"score_{positive}"]
    if not pd.api.types.is_numeric_dtype(scores) or pd.api.types.is_bool_dtype(scores):
        raise ValueError(f"{name}: score_{positive} must hold probabilities; found {scores.dtype}")
    values = scores.to_numpy(dtype=float, na_value=np.nan)
    if not ((values >= 0) & (values <= 1)).all():  # NaN fails too
        bad = int((~((values >= 0) & (values <= 1))).sum())
        raise ValueError(
            f"{name}: {bad} of {len(values)} values of score_{positive} are NaN or outside [0, 1]"
        )
    batches = table[batch_column]
    if not pd.api.types.is_integer_dtype(batches) or pd.api.types.is_bool_dtype(batches):
        raise ValueError(
            f"{name}: batch column {batch_column!r} must hold integers (a batch index per row); "
            f"found dtype {batches.dtype}"
        )
    if batches.isna().any():
        raise ValueError(
            f"{name}: batch column {batch_column!r} is missing in {int(batches.isna().sum())} rows"
        )
    try:
        fairness.checked_labels(table)
    except (KeyError, ValueError) as error:
        raise ValueError(f"{name}: {error}") from None
    if table[attribute].isna().any():
        raise ValueError(
            f"{name}: attribute {attribute!r} is missing in {int(table[attribute].isna().sum())} "
            "rows; give them a group (e.g. 'unknown') first"
        )
    return classes


def _frame(table: pd.DataFrame, *, positive: str, threshold: float) -> pd.DataFrame:
    """The columns NannyML reads: score, decision, binary label and a day per batch."""
    return pd.DataFrame(
        {
            "score": table[f"score_{positive}"].to_numpy(dtype=float),
            _DECISION: (table[f"score_{positive}"].to_numpy(dtype=float) >= threshold).astype(int),
            _LABEL: fairness.binary_labels(table, positive),
            _TIME: _START + pd.to_timedelta(table["_batch"].to_numpy(), unit="D"),
        }
    )


def _analysis(result, metric: str, batches: np.ndarray, what: str) -> pd.DataFrame:
    """The analysis chunks of a NannyML result, indexed by batch, after checking their count."""
    frame = result.to_df()
    frame = frame[frame[("chunk", "period")] == "analysis"]
    found = ((pd.to_datetime(frame[("chunk", "start_date")]) - _START).dt.days).to_numpy()
    if not np.array_equal(np.sort(found), np.sort(batches)):
        raise RuntimeError(
            f"NannyML's {what} made {len(found)} chunks {list(found)}, not one per batch "
            f"{list(batches)}"
        )
    out = frame[metric].copy()
    out.index = pd.Index(found, name="batch")
    return out


def _group_table(
    nml, reference: pd.DataFrame, stream: pd.DataFrame, *, metric: str, std_multiplier: float
) -> pd.DataFrame:
    """CBPE estimate and realised metric per batch for one group's rows."""
    if reference[_TIME].nunique() < 2:
        raise ValueError(
            f"the reference has {reference[_TIME].nunique()} batch for this group; its alarm "
            "band (a standard deviation over reference chunks) needs at least two"
        )
    common = {
        "problem_type": "classification_binary",
        "y_pred_proba": "score",
        "y_pred": _DECISION,
        "y_true": _LABEL,
        "metrics": [metric],
        "timestamp_column_name": _TIME,
        "chunk_period": "D",
    }

    def band():
        return {
            metric: nml.thresholds.StandardDeviationThreshold(
                std_lower_multiplier=std_multiplier, std_upper_multiplier=std_multiplier
            )
        }

    batches = ((stream[_TIME] - _START).dt.days).unique()
    estimator = nml.CBPE(**common, thresholds=band()).fit(reference)
    estimated = estimator.estimate(stream.drop(columns=_LABEL))  # label-free by construction
    calculator = nml.PerformanceCalculator(**common, thresholds=band()).fit(reference)
    realised = calculator.calculate(stream)
    est = _analysis(estimated, metric, batches, "CBPE estimate")
    real = _analysis(realised, metric, batches, "performance calculation").reindex(est.index)
    counts = stream.groupby((stream[_TIME] - _START).dt.days).size().reindex(est.index)
    return pd.DataFrame(
        {
            "n": counts.to_numpy(),
            "estimated": est["value"].to_numpy(dtype=float),
            "estimated_lo": est.get("lower_confidence_boundary", np.nan),
            "estimated_hi": est.get("upper_confidence_boundary", np.nan),
            "realised": real["value"].to_numpy(dtype=float),
            "lower_threshold": est["lower_threshold"].to_numpy(dtype=float),
            "upper_threshold": est["upper_threshold"].to_numpy(dtype=float),
            "alarm": est["alert"].eq(True).to_numpy(),  # NaN (a failed chunk): no alarm
            "realised_alarm": real["alert"].eq(True).to_numpy(),
        },
        index=est.index,
    ).sort_index()


def monitor(
    reference: pd.DataFrame,
    stream: pd.DataFrame,
    *,
    attribute: str,
    positive: str,
    threshold: float,
    metric: str = "accuracy",
    batch_column: str = "batch",
    std_multiplier: float = 3.0,
) -> Monitor:
    """Estimate each group's performance on a deployment stream without labels, and check it.

    Per group of ``attribute``: CBPE is fitted on the group's reference rows and estimates
    ``metric`` on its stream rows, one chunk per batch; the stream's ``y_true`` is used only for
    the realised metric (``PerformanceCalculator``), never for the estimate. Decisions are
    ``score_<positive> >= threshold``. Alarms use NannyML's ``StandardDeviationThreshold``
    fitted on the group's reference chunks, so each group drifts against its own band.

    Args:
        reference: predictions with true labels from before the drift (e.g. a labelled
            stationary stream of the deployment sites), with
            integer pseudo-batches in ``batch_column`` (at least two per group).
        stream: predictions on the deployment stream; ``batch_column`` is each row's time step.
        attribute: the protected attribute whose groups are monitored separately.
        positive: the positive class name (its ``score_<positive>`` column is the score).
        threshold: the decision threshold in [0, 1], chosen on validation data.
        metric: "accuracy", "roc_auc" or "f1".
        batch_column: the column with the integer batch index.
        std_multiplier: the half-width of the alarm band in reference standard deviations.

    Returns:
        A ``Monitor`` whose ``table`` has one row per (group, batch) of the stream.

    Raises:
        ValueError: missing columns, non-integer or missing batches, labels other than 0/1,
            scores outside [0, 1] or not two score columns (the same in both tables), a
            threshold outside [0, 1], an unknown metric, a stream group that the reference
            lacks, or a group with fewer than two reference batches.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {list(METRICS)}; got {metric!r}")
    fairness.check_threshold(threshold)
    if not (np.isfinite(std_multiplier) and std_multiplier > 0):
        raise ValueError(f"std_multiplier must be positive; got {std_multiplier!r}")
    classes, stream_classes = (
        _check_table(table, name, attribute=attribute, positive=positive, batch_column=batch_column)
        for table, name in ((reference, "reference"), (stream, "stream"))
    )
    if stream_classes != classes:
        raise ValueError(
            f"the reference scores the classes {classes} but the stream {stream_classes}; "
            "a code in y_true names a class by its place, so both must match"
        )
    unseen = sorted(set(stream[attribute]) - set(reference[attribute]), key=str)
    if unseen:
        raise ValueError(
            f"stream groups {unseen} of {attribute!r} are absent from the reference "
            f"(its groups: {sorted(set(reference[attribute]), key=str)}); no band to compare with"
        )

    os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")  # no telemetry from an offline study
    import nannyml as nml  # slow (~8 s), so only when monitoring

    def frame(table):
        return _frame(
            table.assign(_batch=table[batch_column]),
            positive=positive,
            threshold=threshold,
        )

    parts = []
    for group in sorted(stream[attribute].unique(), key=str):
        ref = frame(reference[reference[attribute] == group])
        new = frame(stream[stream[attribute] == group])
        with warnings.catch_warnings():  # NannyML's own: "too few chunks", pandas-4 deprecations
            warnings.filterwarnings("ignore", module=r"nannyml\.")
            try:
                part = _group_table(nml, ref, new, metric=metric, std_multiplier=std_multiplier)
            except ValueError as error:
                raise ValueError(f"{attribute}={group!r}: {error}") from error
        parts.append(part.rename_axis("batch").reset_index().assign(group=group))
    table = pd.concat(parts, ignore_index=True)[TABLE_COLUMNS]
    return Monitor(table=table, metric=metric, attribute=attribute)


# --------------------------------------------------------------------------- drifting streams


def shifted_batches(
    n_batches: int, *, onset: int | None, ramp: int, magnitude: float
) -> np.ndarray:
    """The share of each batch drawn from the shifted population: a drift that starts at ``onset``.

    0 before ``onset``; from batch ``onset`` on it rises linearly, reaching ``magnitude`` after
    ``ramp`` batches (``magnitude / ramp`` at ``onset`` itself; ``ramp=1`` is a step), then stays.
    All zeros when ``onset`` is None (a stationary stream).
    """
    if not (isinstance(n_batches, int | np.integer) and n_batches >= 1):
        raise ValueError(f"n_batches must be a positive integer; got {n_batches!r}")
    if not (isinstance(ramp, int | np.integer) and ramp >= 1):
        raise ValueError(f"ramp must be an integer >= 1 (batches); got {ramp!r}")
    if not 0 <= magnitude <= 1:
        raise ValueError(f"magnitude must be a share in [0, 1]; got {magnitude!r}")
    fractions = np.zeros(n_batches)
    if onset is None:
        return fractions
    if not (isinstance(onset, int | np.integer) and 0 <= onset < n_batches):
        raise ValueError(f"onset must be None or a batch in [0, {n_batches}); got {onset!r}")
    steps = np.arange(n_batches) - onset + 1
    fractions[onset:] = magnitude * np.minimum(steps[onset:] / ramp, 1.0)
    return fractions


def stream_rows(
    n_base: int, n_shifted: int, fractions, *, batch_size: int, seed: int
) -> pd.DataFrame:
    """Which rows of two pools make up each batch of a stream with the given shifted shares.

    Batch ``b`` takes ``round(fractions[b] * batch_size)`` rows of the shifted pool and the rest
    from the base pool; rows are drawn without replacement within each pool over the whole
    stream, in a random order within each batch (``numpy.random.default_rng(seed)``).

    Returns:
        Columns ``batch``, ``source`` ("base" or "shifted") and ``row`` (the row in that pool).

    Raises:
        ValueError: shares outside [0, 1], a batch size under 1, or a pool too small.
    """
    fractions = np.asarray(fractions, dtype=float)
    if fractions.ndim != 1 or not ((fractions >= 0) & (fractions <= 1)).all():
        raise ValueError(f"fractions must be a 1-d array of shares in [0, 1]; got {fractions!r}")
    if not (isinstance(batch_size, int | np.integer) and batch_size >= 1):
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
    shifted = np.rint(fractions * batch_size).astype(int)
    base = batch_size - shifted
    for source, need, have in (("base", base.sum(), n_base), ("shifted", shifted.sum(), n_shifted)):
        if need > have:
            raise ValueError(
                f"the stream needs {need} rows from the {source} pool but it has {have} "
                f"({len(fractions)} batches of {batch_size})"
            )
    rng = np.random.default_rng(seed)
    base_rows = rng.permutation(n_base)[: base.sum()]
    shifted_rows = rng.permutation(n_shifted)[: shifted.sum()]
    batches = np.arange(len(fractions))
    table = pd.DataFrame(
        {
            "batch": np.r_[np.repeat(batches, base), np.repeat(batches, shifted)],
            "source": ["base"] * base.sum() + ["shifted"] * shifted.sum(),
            "row": np.r_[base_rows, shifted_rows],
        }
    )
    order = np.lexsort((rng.random(len(table)), table["batch"].to_numpy()))
    return table.iloc[order].reset_index(drop=True)


def pool_summaries(summaries: pd.DataFrame) -> pd.DataFrame:
    """The label-free monitor over seeds, per modality, stream and group.

    ``summaries`` holds ``Monitor.summary`` rows with ``modality``, ``stream`` and ``seed``:
    the mean false-alarm rate, the share of seeds in which the drift was detected (and in which
    the true labels would flag it), the median delay to the first alarm and the agreement with
    the alarms that true labels give.
    """
    rows = []
    for (modality, stream, group), part in summaries.groupby(
        ["modality", "stream", "group"], sort=False
    ):
        rate = float(np.nanmean(part["false_alarm_rate"]))
        detected = float(np.mean(part["detected"]))
        rows.append(
            {
                "modality": modality,
                "stream": stream,
                "group": group,
                "false_alarm_rate": rate,
                "detected": detected,
                "median_delay": float(np.nanmedian(part["delay"])) if part["delay"].notna().any() else np.nan,
                "agreement": float(np.mean(part["agreement"])),
                "realised_detected": float(np.mean(part["realised_detected"])),
                "seeds": part["seed"].nunique(),
            }
        )  # fmt: skip
    return pd.DataFrame(rows)
