import numpy as np
import pandas as pd
import pytest

from fairkit.monitoring import (
    SUMMARY_COLUMNS,
    TABLE_COLUMNS,
    Monitor,
    monitor,
    pool_summaries,
    shifted_batches,
    stream_rows,
)

GROUPS = ("light", "dark")
BATCH = 150
N_REFERENCE, N_STREAM, ONSET = 20, 12, 6
SETTINGS = {"attribute": "skin_group", "positive": "malignant", "threshold": 0.5}


def pool(n: int, *, group: str, seed: int, spread: float = 2.0) -> pd.DataFrame:
    """Predictions with exactly calibrated scores: the score first, then y ~ Bernoulli(score).

    A smaller ``spread`` puts the scores closer to 0.5: a less confident model, lower accuracy,
    visible from the scores alone (what CBPE reads).
    """
    rng = np.random.default_rng(seed)
    score = 1 / (1 + np.exp(-spread * rng.normal(-0.5, 1.0, n)))
    y = rng.binomial(1, score)
    return pd.DataFrame(
        {
            "y_true": y,
            "y_pred": (score >= 0.5).astype(int),
            "score_benign": 1 - score,
            "score_malignant": score,
            "skin_group": group,
        }
    )


def reference_table(seed: int = 0) -> pd.DataFrame:
    parts = [
        pool(N_REFERENCE * BATCH, group=g, seed=seed + k).assign(
            batch=np.repeat(np.arange(N_REFERENCE), BATCH)
        )
        for k, g in enumerate(GROUPS)
    ]
    return pd.concat(parts, ignore_index=True)


def stream_table(*, seed: int, drifting: str | None) -> pd.DataFrame:
    """A stream of N_STREAM batches per group; ``drifting``'s scores lose confidence at ONSET."""
    parts = []
    for k, g in enumerate(GROUPS):
        onset = ONSET if g == drifting else None
        fractions = shifted_batches(N_STREAM, onset=onset, ramp=2, magnitude=1.0)
        base = pool(N_STREAM * BATCH, group=g, seed=seed + 10 * k)
        shifted = pool(N_STREAM * BATCH, group=g, seed=seed + 10 * k + 1, spread=0.4)
        rows = stream_rows(len(base), len(shifted), fractions, batch_size=BATCH, seed=seed + k)
        for source, frame in (("base", base), ("shifted", shifted)):
            chosen = rows[rows["source"] == source]
            parts.append(frame.iloc[chosen["row"]].assign(batch=chosen["batch"].to_numpy()))
    return pd.concat(parts, ignore_index=True).sort_values("batch", kind="stable")


@pytest.fixture(scope="module")
def reference():
    return reference_table()


@pytest.fixture(scope="module")
def drift_stream():
    return stream_table(seed=100, drifting="dark")


@pytest.fixture(scope="module")
def drift(reference, drift_stream):
    return monitor(reference, drift_stream, **SETTINGS)


@pytest.fixture(scope="module")
def stationary(reference):
    return monitor(reference, stream_table(seed=200, drifting=None), **SETTINGS)


# --------------------------------------------------------------------------- monitor


def test_table_has_one_row_per_group_and_batch_with_a_band_around_the_estimate(drift):
    table = drift.table
    assert list(table.columns) == TABLE_COLUMNS
    assert drift.metric == "accuracy" and drift.attribute == "skin_group"
    assert len(table) == len(GROUPS) * N_STREAM
    assert not table.duplicated(["group", "batch"]).any()
    assert set(table["group"]) == set(GROUPS)
    for _, part in table.groupby("group"):
        assert part["batch"].tolist() == list(range(N_STREAM))
        assert part["lower_threshold"].nunique() == 1 and part["upper_threshold"].nunique() == 1
    assert (table["n"] == BATCH).all()
    assert (table["estimated_lo"] < table["estimated"]).all()
    assert (table["estimated"] < table["estimated_hi"]).all()
    assert (table["lower_threshold"] < table["upper_threshold"]).all()
    assert table["alarm"].dtype == bool and table["realised_alarm"].dtype == bool
    # the alarm is the estimate outside the band
    outside = (table["estimated"] < table["lower_threshold"]) | (
        table["estimated"] > table["upper_threshold"]
    )
    assert (table["alarm"] == outside).all()
    assert drift.alarms()["alarm"].all() and len(drift.alarms()) == table["alarm"].sum()


def test_a_group_whose_scores_lose_confidence_raises_an_alarm_soon_after_onset(drift):
    summary = drift.summary(onset=ONSET).set_index("group")
    assert list(summary.reset_index().columns) == SUMMARY_COLUMNS
    dark, light = summary.loc["dark"], summary.loc["light"]
    assert dark["detected"] and dark["realised_detected"], drift.table
    assert dark["delay"] <= 1, f"delay {dark['delay']} batches"
    assert dark["false_alarm_rate"] == 0
    assert dark["agreement"] >= 0.8, drift.table  # the realised metric is noisy near the band
    assert not light["detected"] and light["agreement"] == 1
    # once the drift is complete every dark chunk alarms, and only dark ones
    late = drift.table[drift.table["batch"] >= ONSET + 1]
    assert late.loc[late["group"] == "dark", "alarm"].all()
    assert not late.loc[late["group"] == "light", "alarm"].any()
    # CBPE tracks the realised accuracy without labels (calibrated scores)
    error = (drift.table["estimated"] - drift.table["realised"]).abs()
    assert error.mean() < 0.04, f"mean |estimated - realised| = {error.mean():.3f}"
    dark_rows = drift.table[drift.table["group"] == "dark"]
    drop = dark_rows["estimated"].iloc[:ONSET].mean() - dark_rows["estimated"].iloc[-3:].mean()
    assert drop > 0.15, f"estimated accuracy fell by only {drop:.3f}"


def test_a_stationary_stream_rarely_alarms(stationary):
    rate = stationary.table["alarm"].mean()
    assert rate <= 0.1, f"false-alarm rate {rate:.3f} over {len(stationary.table)} chunks"
    summary = stationary.summary(onset=None)
    assert not summary["detected"].any() and summary["delay"].isna().all()
    assert (summary["chunks"] == N_STREAM).all()
    assert summary["false_alarm_rate"].max() <= 0.1, summary


def test_the_estimate_is_label_free_but_the_realised_metric_is_not(reference, drift_stream, drift):
    flipped = drift_stream.assign(y_true=1 - drift_stream["y_true"])
    other = monitor(reference, flipped, **SETTINGS)
    np.testing.assert_array_equal(other.table["estimated"], drift.table["estimated"])
    np.testing.assert_array_equal(other.table["alarm"], drift.table["alarm"])
    np.testing.assert_allclose(other.table["realised"], 1 - drift.table["realised"])


@pytest.mark.parametrize("metric", ["roc_auc", "f1"])
def test_other_metrics_also_see_the_drift(reference, drift_stream, metric):
    result = monitor(reference, drift_stream, **SETTINGS, metric=metric)
    assert result.metric == metric
    summary = result.summary(onset=ONSET).set_index("group")
    assert summary.loc["dark", "detected"] and summary.loc["dark", "delay"] <= 2, result.table
    assert not summary.loc["light", "detected"], result.table


def test_summary_counts_false_alarms_delay_and_agreement():
    table = pd.DataFrame(
        {
            "group": ["a"] * 6 + ["b"] * 6,
            "batch": list(range(6)) * 2,
            "alarm": [True, False, False, False, True, True] + [False] * 6,
            "realised_alarm": [False, False, False, True, True, True] + [False] * 5 + [True],
        }
    )
    summary = Monitor(table, "accuracy", "sex").summary(onset=3).set_index("group")
    a, b = summary.loc["a"], summary.loc["b"]
    assert a["chunks"] == 6 and a["false_alarm_rate"] == pytest.approx(1 / 3)
    assert a["detected"] and a["delay"] == 1 and a["agreement"] == pytest.approx(4 / 6)
    assert a["realised_detected"]
    assert not b["detected"] and np.isnan(b["delay"]) and b["realised_detected"]
    assert b["agreement"] == pytest.approx(5 / 6)
    everything = Monitor(table, "accuracy", "sex").summary(onset=None).set_index("group")
    assert everything.loc["a", "false_alarm_rate"] == pytest.approx(0.5)
    assert not everything["detected"].any() and not everything["realised_detected"].any()


# --------------------------------------------------------------------------- refused input


def test_missing_columns_are_named(reference, drift_stream):
    with pytest.raises(ValueError, match=r"stream lacks columns \['skin_group'\]"):
        monitor(reference, drift_stream.drop(columns="skin_group"), **SETTINGS)
    with pytest.raises(ValueError, match="score_malignant"):
        monitor(reference.drop(columns="score_malignant"), drift_stream, **SETTINGS)
    with pytest.raises(ValueError, match="'batch'"):
        monitor(reference, drift_stream.drop(columns="batch"), **SETTINGS)


def test_a_group_unseen_in_the_reference_is_refused(reference, drift_stream):
    stream = drift_stream.copy()
    stream.loc[stream.index[:5], "skin_group"] = "medium"
    with pytest.raises(ValueError, match="medium"):
        monitor(reference, stream, **SETTINGS)


def test_bad_labels_batches_threshold_and_metric_are_refused(reference, drift_stream):
    stream = drift_stream.copy()
    stream.loc[stream.index[0], "y_true"] = 2
    with pytest.raises(ValueError, match="y_true.*2"):
        monitor(reference, stream, **SETTINGS)
    with pytest.raises(ValueError, match="'batch'.*float64"):
        monitor(reference, drift_stream.assign(batch=drift_stream["batch"] + 0.5), **SETTINGS)
    with pytest.raises(ValueError, match="auroc"):
        monitor(reference, drift_stream, **SETTINGS, metric="auroc")
    with pytest.raises(ValueError, match="threshold.*1.5"):
        monitor(reference, drift_stream, **{**SETTINGS, "threshold": 1.5})
    with pytest.raises(ValueError, match="threshold must be a number in \\[0, 1\\]; got True"):
        monitor(reference, drift_stream, **{**SETTINGS, "threshold": True})
    with pytest.raises(ValueError, match="score_malignant"):
        monitor(reference, drift_stream.assign(score_malignant=2.0), **SETTINGS)


def test_a_group_with_one_reference_batch_has_no_band(reference, drift_stream):
    one = reference[(reference["skin_group"] == "light") | (reference["batch"] == 0)]
    with pytest.raises(ValueError, match="skin_group='dark'.*at least two"):
        monitor(one, drift_stream, **SETTINGS)


# --------------------------------------------------------------------------- drifting streams


def test_shifted_batches_ramp_up_from_onset():
    np.testing.assert_allclose(
        shifted_batches(9, onset=3, ramp=4, magnitude=0.8),
        [0, 0, 0, 0.2, 0.4, 0.6, 0.8, 0.8, 0.8],
    )
    np.testing.assert_array_equal(shifted_batches(4, onset=2, ramp=1, magnitude=1.0), [0, 0, 1, 1])
    np.testing.assert_array_equal(shifted_batches(5, onset=None, ramp=3, magnitude=1.0), 0)
    assert shifted_batches(5, onset=None, ramp=3, magnitude=1.0).shape == (5,)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"onset": 2, "ramp": 1, "magnitude": 1.5}, "magnitude"),
        ({"onset": 2, "ramp": 0, "magnitude": 0.5}, "ramp"),
        ({"onset": 5, "ramp": 1, "magnitude": 0.5}, "onset"),
        ({"onset": -1, "ramp": 1, "magnitude": 0.5}, "onset"),
    ],
)
def test_shifted_batches_refuses_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        shifted_batches(5, **kwargs)


def test_stream_rows_fill_each_batch_without_replacement():
    fractions = shifted_batches(6, onset=2, ramp=2, magnitude=0.5)  # 0, 0, .25, .5, .5, .5
    rows = stream_rows(300, 100, fractions, batch_size=40, seed=3)
    assert list(rows.columns) == ["batch", "source", "row"]
    assert (rows.groupby("batch").size() == 40).all()
    shifted = rows[rows["source"] == "shifted"].groupby("batch").size()
    assert shifted.reindex(range(6), fill_value=0).tolist() == [0, 0, 10, 20, 20, 20]
    assert not rows.duplicated(["source", "row"]).any()
    assert rows.loc[rows["source"] == "base", "row"].between(0, 299).all()
    assert rows.loc[rows["source"] == "shifted", "row"].between(0, 99).all()
    assert rows["batch"].is_monotonic_increasing
    pd.testing.assert_frame_equal(rows, stream_rows(300, 100, fractions, batch_size=40, seed=3))
    assert not rows.equals(stream_rows(300, 100, fractions, batch_size=40, seed=4))


def test_stream_rows_refuse_a_pool_too_small():
    fractions = shifted_batches(6, onset=2, ramp=2, magnitude=0.5)
    with pytest.raises(ValueError, match="needs 70 rows from the shifted pool but it has 69"):
        stream_rows(300, 69, fractions, batch_size=40, seed=0)
    with pytest.raises(ValueError, match="needs 170 rows from the base pool but it has 100"):
        stream_rows(100, 100, fractions, batch_size=40, seed=0)


def test_pool_summaries_pools_the_seeds_per_stream_and_group():
    summaries = pd.DataFrame({
        "modality": "skin", "stream": ["stationary"] * 4 + ["site shift"] * 4,
        "group": ["dark", "light"] * 4, "seed": [0, 0, 1, 1] * 2,
        "false_alarm_rate": [0.0, 0.1, 0.0, 0.1, 0.0, 0.0, 0.0, 0.0],
        "detected": [False] * 4 + [True, False, True, True],
        "delay": [np.nan] * 4 + [1, np.nan, 3, 2], "agreement": 1.0,
        "realised_detected": [False] * 4 + [True] * 4,
    })  # fmt: skip
    rates = pool_summaries(summaries).set_index(["stream", "group"])
    assert rates.loc[("stationary", "light"), "false_alarm_rate"] == pytest.approx(0.1)
    assert rates.loc[("site shift", "dark"), "detected"] == 1.0
    assert rates.loc[("site shift", "light"), "detected"] == 0.5
    assert rates.loc[("site shift", "dark"), "median_delay"] == 2.0
    assert rates.loc[("site shift", "dark"), "seeds"] == 2
    assert rates.loc[("site shift", "light"), "realised_detected"] == 1.0
