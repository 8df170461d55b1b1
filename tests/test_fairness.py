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

from fairkit import bootstrap, fairness

from .conftest import predictions


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
    with pytest.warns(UserWarning, match="n_boot=0"):
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
    with pytest.warns(
        fairness.GroupWarning,
        match=r"sex='M': no positives among its \d+ samples \('pos' is positive\)",
    ):
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


@settings(max_examples=25, deadline=None)
@given(n=st.integers(40, 400), seed=st.integers(0, 10_000), skill=st.floats(0.0, 0.9))
def test_every_reported_interval_contains_its_estimate(n, seed, skill):
    report = fairness.report(predictions(n, seed, skill=skill), groups=["sex", "site"],
                             thresholds=0.5, n_boot=50, seed=seed)  # fmt: skip
    for table in (report.by_group, report.gaps):
        finite = table.dropna(subset=["value", "lo", "hi"])
        assert (
            (finite["lo"] <= finite["value"] + 1e-12) & (finite["value"] <= finite["hi"] + 1e-12)
        ).all()


# --------------------------------------------------------------------------- bad input


def _report_of(table, **kwargs):
    return fairness.report(table, groups=["sex"], thresholds=0.5, intersections=False,
                           **{"n_boot": 10, **kwargs})  # fmt: skip


@pytest.mark.parametrize(("bad", "shown"), [(-1, "-1"), (2, "2"), (np.nan, "nan")])
def test_labels_outside_the_classes_are_refused_with_their_count(bad, shown):
    table = predictions(200, 20)
    table["y_true"] = table["y_true"].astype(float if bad is np.nan else int)
    table.loc[:4, "y_true"] = bad
    expected = (
        rf"y_true: 5 of 200 labels are outside the classes \['neg', 'pos'\].*{shown} in 5 rows"
    )
    with pytest.raises(ValueError, match=expected):
        _report_of(table)
    with pytest.raises(ValueError, match=expected):
        fairness.choose_threshold(table, positive="pos")


def test_labels_given_as_class_names_read_as_the_score_columns_order():
    table = predictions(400, 21)
    named = table.assign(y_true=np.where(table["y_true"] == 1, "pos", "neg"))
    pd.testing.assert_frame_equal(_report_of(named).by_group, _report_of(table).by_group)
    assert fairness.choose_threshold(named, positive="pos") == fairness.choose_threshold(
        table, positive="pos"
    )


def test_labels_that_are_neither_codes_nor_class_names_are_refused():
    table = predictions(200, 22)
    named = table.assign(y_true=np.where(table["y_true"] == 1, "positive", "neg"))
    with pytest.raises(ValueError, match=r"outside the classes \['neg', 'pos'\].*'positive'"):
        _report_of(named)


def test_a_table_without_score_columns_says_so():
    table = predictions(100, 23).drop(columns=["score_neg", "score_pos"])
    with pytest.raises(KeyError, match=r"no score_<class> columns.*y_true, y_pred, sex"):
        _report_of(table)
    with pytest.raises(KeyError, match="no score_<class> columns"):
        fairness.choose_threshold(table, positive="pos")


@pytest.mark.filterwarnings("ignore::fairkit.fairness.GroupWarning")
def test_missing_group_values_form_an_unknown_group_with_a_warning():
    table = predictions(400, 24)
    table["sex"] = table["sex"].astype(object)
    table.loc[:6, "sex"] = None
    with pytest.warns(fairness.UnknownGroupWarning, match="7 of 400 rows have no sex"):
        rep = fairness.report(table, groups=["sex", "site"], thresholds=0.5, n_boot=10)
    assert rep.by_group.query("group == 'unknown' and metric == 'recall'")["n"].item() == 7
    assert {"F", "M", "unknown"} == set(rep.by_group.query("attribute == 'sex'")["group"])
    assert rep.by_group["group"].str.startswith("unknown & ").any()  # sex x site


def test_an_empty_table_is_refused():
    with pytest.raises(ValueError, match="predictions table is empty"):
        _report_of(predictions(50, 25).iloc[:0])


def test_nan_scores_are_refused_naming_the_column():
    table = predictions(200, 26)
    table.loc[[3, 8], "score_pos"] = np.nan
    with pytest.raises(ValueError, match=r"score_pos: 2 of 200 scores are NaN"):
        _report_of(table)
    with pytest.raises(ValueError, match="score_pos: 2 of 200 scores are NaN"):
        fairness.choose_threshold(table, positive="pos")


@pytest.mark.parametrize("scale", [3.0, -1.0])
def test_scores_outside_the_unit_interval_are_refused(scale):
    table = predictions(200, 27)
    table["score_pos"] = table["score_pos"] * scale
    with pytest.raises(ValueError, match=r"score_pos: \d+ of 200 scores are outside \[0, 1\]"):
        _report_of(table)


def test_no_bootstrap_warns_that_intervals_are_nan_and_a_negative_count_is_refused():
    table = predictions(200, 28)
    with pytest.warns(UserWarning, match="n_boot=0: no bootstrap replicates"):
        rep = _report_of(table, n_boot=0)
    assert rep.by_group["lo"].isna().all() and rep.by_group["value"].notna().any()
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match=f"n_boot must be a whole number >= 0; got {bad!r}"):
            _report_of(table, n_boot=bad)


@pytest.mark.parametrize("bad", [0.7, np.nan, 2])
def test_decisions_that_are_not_zero_or_one_are_refused(bad):
    table = predictions(40, 21)
    table["decision"] = (table["score_pos"] >= 0.5).astype(float)
    table.loc[3, "decision"] = bad
    with pytest.raises(ValueError, match="decision: 1 of 40 values are not 0 or 1"):
        _report_of(table)


# --------------------------------------------------------------------------- undefined stays undefined


def _with_tiny_negative_group(seed=30):
    """Two groups of 300 and a third of 3 images, all negative: its TPR and FNR are undefined."""
    table = predictions(600, seed)
    tiny = predictions(3, seed + 1).assign(y_true=0, sex="X", patient_id=[1000, 1001, 1002])
    return pd.concat([table, tiny], ignore_index=True)


def test_a_group_without_positives_is_left_out_of_every_gap_that_needs_positives():
    table = _with_tiny_negative_group()
    with pytest.warns(fairness.GroupWarning, match=r"sex='X'.*no positives"):
        rep = fairness.report(table, groups=["sex"], thresholds=0.5, n_boot=200,
                              intersections=False)  # fmt: skip
    kept = table[table["sex"] != "X"]
    p = (kept["score_pos"] >= 0.5).astype(int)
    expected = equal_opportunity_difference(kept["y_true"], p, sensitive_features=kept["sex"])
    assert rep.value("equal_opportunity", attribute="sex") == pytest.approx(expected)
    assert rep.value("gap_fnr", attribute="sex") == pytest.approx(
        rep.value("gap_recall", attribute="sex")
    )
    for metric in ("recall", "fnr", "auroc"):
        assert np.isnan(rep.value(metric, group="X"))
    assert rep.value("fpr", group="X") == pytest.approx((table["score_pos"][600:] >= 0.5).mean())
    left_out = rep.undefined.query("group == 'X'")
    assert {"recall", "fnr", "auroc", "equal_opportunity", "gap_fnr"} <= set(left_out["metric"])
    assert left_out["reason"].str.contains("no positives").all()
    eo = rep.gaps.query("metric == 'equal_opportunity'").iloc[0]
    assert eo["lo"] <= eo["value"] <= eo["hi"] and eo["hi"] < 0.5


def test_a_gap_over_fewer_than_two_defined_groups_is_undefined():
    table = predictions(300, 31)
    table.loc[table["sex"] == "M", "y_true"] = 0
    with pytest.warns(fairness.GroupWarning):
        rep = fairness.report(table, groups=["sex"], thresholds=0.5, n_boot=50,
                              intersections=False)  # fmt: skip
    for metric in ("equal_opportunity", "gap_recall", "equalized_odds"):
        assert np.isnan(rep.value(metric, attribute="sex")), metric
    assert (
        "fewer than two groups"
        in rep.undefined.query("metric == 'gap_recall' and group == 'all'")["reason"].iloc[0]
    )
    assert rep.value("gap_fpr", attribute="sex") >= 0


def test_score_columns_are_read_by_their_class_name_not_their_place():
    table = predictions(400, 32)
    swapped = table[["y_true", "sex", "patient_id"]].assign(
        score_1=table["score_pos"], score_0=table["score_neg"]
    )
    rep = fairness.report(swapped, groups=["sex"], thresholds=0.5, n_boot=0, intersections=False)
    for group in ("F", "M"):
        rows = table["sex"] == group
        expected = roc_auc_score(table["y_true"][rows], table["score_pos"][rows])
        assert rep.value("auroc", group=group) == pytest.approx(expected)
    assert fairness.choose_threshold(swapped, positive="1") == fairness.choose_threshold(
        table, positive="pos"
    )


@pytest.mark.parametrize(
    ("thresholds", "message"),
    [
        ({"postive": 0.3}, r"thresholds name classes that are not scored: \['postive'\]"),
        ({"neg": 0.3}, r"no threshold for the positive class 'pos'"),
        (float("nan"), r"threshold.*must be a number in \[0, 1\]; got nan"),
        (1.5, r"threshold.*must be a number in \[0, 1\]; got 1.5"),
        ("0.3", r"thresholds must be a number or a dict.*got '0.3'"),
        ({"pos": "0.3"}, r"threshold of class 'pos' must be a number in \[0, 1\]; got '0.3'"),
        (True, r"thresholds must be a number or a dict.*got True"),
    ],
)
def test_thresholds_for_unknown_classes_or_outside_the_unit_interval_are_refused(
    thresholds, message
):
    with pytest.raises(ValueError, match=message):
        fairness.report(predictions(100, 33), groups=["sex"], thresholds=thresholds, n_boot=0)


def test_multiclass_thresholds_must_name_known_classes():
    table = predictions(200, 34).drop(columns=["score_neg", "score_pos"])
    table = table.assign(y_true=np.arange(200) % 3, score_a=0.2, score_b=0.3, score_c=0.5)
    with pytest.raises(ValueError, match=r"not scored: \['d'\]"):
        fairness.report(table, groups=["sex"], thresholds={"a": 0.5, "d": 0.5}, n_boot=0)


def _random_table(data, n_classes):
    """Random predictions with groups of any size, some lacking a class, patients of 1-3 images."""
    n = data.draw(st.integers(6, 120), label="n")
    seed = data.draw(st.integers(0, 2**16), label="seed")
    rng = np.random.default_rng(seed)
    sizes = rng.multinomial(n, rng.dirichlet(np.ones(3) * 0.5))
    groups = np.repeat(["a", "b", "c"], sizes)
    y = rng.integers(0, n_classes, n)
    for group in data.draw(st.sets(st.sampled_from("abc"), max_size=2), label="single class"):
        y[groups == group] = rng.integers(0, n_classes)
    probs = rng.dirichlet(np.ones(n_classes), n)
    table = pd.DataFrame({"y_true": y, "g": groups, "patient_id": rng.integers(0, n, n)})
    for k in range(n_classes):
        table[f"score_c{k}"] = probs[:, k]
    return table


def _needs(metric: str, y: np.ndarray, pred: np.ndarray) -> bool:
    """Whether a binary rate is defined on these labels and decisions (its denominator > 0)."""
    positives, negatives, chosen = (y == 1).sum(), (y == 0).sum(), (pred == 1).sum()
    return {
        "recall": positives > 0, "fnr": positives > 0, "fpr": negatives > 0,
        "auroc": positives > 0 and negatives > 0, "precision": chosen > 0,
        "f1": positives + chosen > 0,
    }.get(metric, True)  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(data=st.data(), n_classes=st.sampled_from([2, 3]))
def test_every_statistic_has_an_interval_around_it_or_a_reason_it_has_none(data, n_classes):
    table = _random_table(data, n_classes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rep = fairness.report(table, groups=["g"], n_boot=30, seed=1)
    reasons = set(zip(rep.undefined["group"], rep.undefined["metric"], strict=True))
    for frame, group in ((rep.by_group, rep.by_group.get("group")), (rep.gaps, None)):
        groups = group if group is not None else pd.Series("all", index=frame.index)
        for (value, lo, hi), name, metric in zip(
            frame[["value", "lo", "hi"]].to_numpy(float), groups, frame["metric"], strict=True
        ):
            if np.isnan(value) or np.isnan(lo) or np.isnan(hi):
                assert (str(name), metric) in reasons, (name, metric, value, lo, hi)
            else:
                assert lo - 1e-9 <= value <= hi + 1e-9, (name, metric, value, lo, hi)
    binary = rep.by_group if n_classes == 2 else rep.by_group[rep.by_group["cls"] != "macro"]
    classes = [c.removeprefix("score_") for c in table if c.startswith("score_")]
    for row in binary.itertuples():
        positive = classes[1] if n_classes == 2 else row.cls
        code = classes.index(positive)
        rows = table["g"] == row.group
        y = (table["y_true"][rows] == code).to_numpy().astype(int)
        pred = (table[f"score_{positive}"][rows] >= 0.5).to_numpy().astype(int)
        if not _needs(row.metric, y, pred):
            assert np.isnan(row.value), (row.group, row.metric, row.value)


def test_a_tie_is_not_called_a_gap():
    assert fairness.lower_group(pd.Series({"light": 0.8124, "dark": 0.8121}), digits=3) is None
    assert fairness.lower_group(pd.Series({"light": 0.81, "dark": 0.79}), digits=3) == "dark"


def test_missing_patient_ids_are_refused_rather_than_pooled_into_one_patient():
    table = predictions(100, 35).astype({"patient_id": float})
    table.loc[:2, "patient_id"] = np.nan
    with pytest.raises(ValueError, match=r"patient_id: 3 of 100 rows have no patient id"):
        fairness.report(table, groups=["sex"], thresholds=0.5, n_boot=10)


def test_groups_given_as_one_name_are_refused():
    with pytest.raises(TypeError, match=r"groups must be a list of column names; got 'sex'"):
        fairness.report(predictions(50, 36), groups="sex", thresholds=0.5, n_boot=0)


def _shifted_groups(n_young: int, n_old: int, seed: int = 0) -> pd.DataFrame:
    """Validation scores whose old group runs higher (as MRI's do with age), 20% positives."""
    rng = np.random.default_rng(seed)
    rows = []
    for group, n, shift in (("young", n_young, 0.0), ("old", n_old, 0.25)):
        y = (rng.random(n) < 0.2).astype(int)
        score = np.clip(0.3 + 0.3 * y + shift + 0.1 * rng.standard_normal(n), 0, 1)
        rows.append(pd.DataFrame({"y_true": y, "score_1": score, "score_0": 1 - score,
                                  "age_group": group}))  # fmt: skip
    return pd.concat(rows, ignore_index=True)


def test_the_threshold_suits_the_test_sets_group_mix_not_the_validation_sets():
    val = _shifted_groups(900, 100)
    plain = fairness.choose_threshold(val, positive="1")
    balanced = ("age_group", {"young": 0.5, "old": 0.5})
    mixed = fairness.choose_threshold(val, positive="1", mix=balanced)
    test = _shifted_groups(500, 500, seed=1)
    old = test[test["age_group"] == "old"]

    def accuracy(rows, t):
        return float(((rows["score_1"] >= t).astype(int) == rows["y_true"]).mean())

    # Chosen for the young majority, the threshold calls most old patients positive.
    assert accuracy(old, plain) < 0.5 < accuracy(old, mixed)
    assert accuracy(test, mixed) > accuracy(test, plain)


def test_a_group_mix_without_a_share_for_a_group_is_refused():
    val = _shifted_groups(90, 10)
    with pytest.raises(ValueError, match=r"no test share given for the age_group groups \['old'\]"):
        fairness.choose_threshold(val, positive="1", mix=("age_group", {"young": 1.0}))
    with pytest.raises(KeyError, match="no 'site' column"):
        fairness.choose_threshold(val, positive="1", mix=("site", {"A": 1.0}))
