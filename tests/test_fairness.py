import warnings

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (
    demographic_parity_difference,
    equal_opportunity_difference,
    equalized_odds_difference,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

from fairkit import bootstrap, fairness, verdicts


def predictions(n, seed, groups=("F", "M"), skill=0.3):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = np.clip(skill * y + (1 - skill) * rng.random(n), 0, 1)
    return pd.DataFrame(
        {
            "y_true": y,
            "y_pred": (s >= 0.5).astype(int),
            "score_neg": 1 - s,
            "score_pos": s,
            "sex": rng.choice(groups, n),
            "site": rng.choice(["A", "B", "C"], n),
            "patient_id": np.arange(n) // 2,
        }
    )


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(60, 400), threshold=st.floats(0.3, 0.7))
def test_report_agrees_with_fairlearn_and_scikit_learn(seed, n, threshold):
    table = predictions(n, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rep = fairness.report(
            table, groups=["sex"], thresholds=threshold, n_boot=0, intersections=False
        )
    y, p, g = table["y_true"], (table["score_pos"] >= threshold).astype(int), table["sex"]
    expected = {
        "equalized_odds": equalized_odds_difference(y, p, sensitive_features=g),
        "equalized_odds_mean": equalized_odds_difference(y, p, sensitive_features=g, agg="mean"),
        "equal_opportunity": equal_opportunity_difference(y, p, sensitive_features=g),
        "demographic_parity": demographic_parity_difference(y, p, sensitive_features=g),
    }
    for metric, value in expected.items():
        assert rep.value(metric, attribute="sex") == pytest.approx(value)
    for group in ("F", "M"):
        rows = g == group
        yg, pg = y[rows], p[rows]
        assert rep.value("recall", group=group) == pytest.approx(
            recall_score(yg, pg, zero_division=np.nan), nan_ok=True
        )
        assert rep.value("precision", group=group) == pytest.approx(
            precision_score(yg, pg, zero_division=np.nan), nan_ok=True
        )
        assert rep.value("f1", group=group) == pytest.approx(
            f1_score(yg, pg, zero_division=np.nan), nan_ok=True
        )
        if yg.nunique() == 2:
            assert rep.value("auroc", group=group) == pytest.approx(
                roc_auc_score(yg, table["score_pos"][rows])
            )


def test_bootstrap_replicate_with_unit_weights_reproduces_the_point_estimate():
    table = predictions(500, 1)
    y = table["y_true"].to_numpy()
    s = table["score_pos"].to_numpy()
    p = (s >= 0.5).astype(int)
    codes, names = pd.factorize(table["sex"], sort=True)
    ones = np.ones((1, len(table)))
    rates = bootstrap.weighted_rates(y, p, s, codes, len(names), ones)
    auroc, _ = bootstrap.weighted_auroc_ece(y, s, codes, len(names), ones)
    rep = fairness.report(table, groups=["sex"], thresholds=0.5, n_boot=0, intersections=False)
    for k, name in enumerate(names):
        assert rates["recall"][0, k] == pytest.approx(rep.value("recall", group=name))
        assert rates["fpr"][0, k] == pytest.approx(rep.value("fpr", group=name))
        assert auroc[0, k] == pytest.approx(rep.value("auroc", group=name))


def test_intervals_cover_the_estimate_and_shrink_with_more_samples():
    def width(n):
        rep = fairness.report(
            predictions(n, 3), groups=["sex"], thresholds=0.5, n_boot=300, intersections=False
        )
        rows = rep.by_group[rep.by_group["metric"].isin(["recall", "accuracy", "auroc"])]
        assert ((rows["lo"] <= rows["value"] + 1e-12) & (rows["value"] <= rows["hi"] + 1e-12)).all()
        return (rows["hi"] - rows["lo"]).mean()

    assert width(4000) < 0.6 * width(400)


def test_patients_are_resampled_together():
    weights = fairness.patient_weights(np.array(["a", "a", "b", "c", "c", "c"]), 50, seed=0)
    assert (weights[:, 0] == weights[:, 1]).all() and (weights[:, 3] == weights[:, 5]).all()
    assert (weights[:, [0, 2, 3]].sum(1) == 3).all()


def test_intersections_are_reported():
    rep = fairness.report(predictions(600, 2), groups=["sex", "site"], thresholds=0.5, n_boot=20)
    assert "sex x site" in set(rep.by_group["attribute"])
    assert len(rep.by_group.query("attribute == 'sex x site' and metric == 'recall'")) == 6


def test_single_class_group_warns_and_gives_nan():
    table = predictions(300, 4)
    table.loc[table["sex"] == "M", "y_true"] = 0
    with pytest.warns(fairness.GroupWarning, match="sex='M' has only class 0"):
        rep = fairness.report(table, groups=["sex"], thresholds=0.5, n_boot=10, intersections=False)
    assert np.isnan(rep.value("recall", group="M")) and np.isnan(rep.value("auroc", group="M"))
    assert not np.isnan(rep.value("recall", group="F"))


def test_multiclass_is_one_vs_rest_with_macro_average():
    rng = np.random.default_rng(5)
    n = 400
    probs = rng.dirichlet(np.ones(3), n)
    table = pd.DataFrame({"y_true": rng.integers(0, 3, n), "sex": rng.choice(["F", "M"], n)})
    for k, name in enumerate(["a", "b", "c"]):
        table[f"score_{name}"] = probs[:, k]
    rep = fairness.report(table, groups=["sex"], n_boot=10, intersections=False)
    recall = rep.by_group.query("metric == 'recall' and group == 'F'")
    per_class = recall[recall["cls"] != "macro"]["value"]
    assert recall[recall["cls"] == "macro"]["value"].iloc[0] == pytest.approx(per_class.mean())


def test_threshold_is_chosen_on_validation_predictions():
    val = predictions(1000, 6, skill=0.6)
    threshold = fairness.choose_threshold(val, positive="pos")
    assert 0.2 < threshold < 0.8
    with pytest.raises(ValueError, match="one class"):
        fairness.choose_threshold(val.assign(y_true=0), positive="pos")


def test_improvement_is_the_relative_gap_reduction_with_a_paired_interval():
    table = predictions(1500, 7)
    biased = table.assign(
        score_pos=np.where(table["sex"] == "M", table["score_pos"] * 0.7, table["score_pos"])
    )
    base = fairness.report(biased, groups=["sex"], thresholds=0.5, n_boot=200, intersections=False)
    fair = fairness.report(table, groups=["sex"], thresholds=0.5, n_boot=200, intersections=False)
    result = fairness.improvement(base, fair, "equal_opportunity", attribute="sex")
    expected = 100 * (result.baseline - result.method) / result.baseline
    assert result.percent == pytest.approx(expected)
    assert result.percent > 50 and result.lo <= result.percent <= result.hi


def test_with_intervals_prints_value_and_interval_per_row():
    table = pd.DataFrame(
        {"value": [0.5, 0.12345], "lo": [0.4, 0.1], "hi": [0.6, 0.2]}, index=[3, 7]
    )
    shown = verdicts.with_intervals(table)
    assert shown.to_dict() == {3: "0.500 [0.400, 0.600]", 7: "0.123 [0.100, 0.200]"}


@pytest.mark.parametrize(
    ("a", "b", "word"),
    [
        ((0.6, 0.7), (0.4, 0.5), "better"),
        ((0.4, 0.5), (0.6, 0.7), "worse"),
        ((0.5, 0.65), (0.6, 0.7), "no detectable difference"),
    ],
)
def test_verdict_names_a_winner_only_when_intervals_do_not_overlap(a, b, word):
    def estimate(lo, hi):
        return pd.Series({"value": (lo + hi) / 2, "lo": lo, "hi": hi})

    assert verdicts.verdict(estimate(*a), estimate(*b)) == word
