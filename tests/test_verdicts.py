"""The verdicts: paired differences, pooling over seeds, the one wording rule, Fieller, Holm, power."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fairkit import fairness, verdicts

from .conftest import predictions


def test_fieller_covers_the_true_ratio_in_93_to_97_percent_of_simulated_five_seed_studies():
    # 2,000 studies of 5 seeds: per-seed (numerator, denominator) correlated normal pairs
    # around a true ratio of 0.4 (a gap of 0.10 narrowed by 40%), with seed noise like ours.
    rng = np.random.default_rng(0)
    mean, cov = (
        np.array([0.04, 0.10]),
        np.array([[0.02**2, 0.5 * 0.02 * 0.02], [0.5 * 0.02 * 0.02, 0.02**2]]),
    )
    covered = 0
    for _ in range(2000):
        x, y = rng.multivariate_normal(mean, cov, size=5).T
        _, lo, hi = verdicts.fieller(x, y)
        covered += lo <= 0.4 <= hi
    assert 0.93 <= covered / 2000 <= 0.97


def test_fieller_is_unbounded_when_the_denominator_is_not_distinguishable_from_zero():
    value, lo, hi = verdicts.fieller(
        [0.01, -0.02, 0.03, 0.0, 0.01], [0.05, -0.04, 0.02, -0.03, 0.01]
    )
    assert np.isfinite(value) and (lo, hi) == (-np.inf, np.inf)


def test_pooled_improvement_is_a_ratio_of_means_over_every_seed_not_a_mean_of_ratios():
    base = np.array([0.20, 0.02, 0.15, 0.10, 0.12])  # seed 1's gap is tiny: its ratio explodes
    method = np.array([0.10, 0.05, 0.09, 0.05, 0.06])
    value, lo, hi, n = verdicts.pooled_improvement(method, base)
    assert n == 5
    assert value == pytest.approx(100 * (base.sum() - method.sum()) / base.sum())
    assert lo < value < hi
    per_seed = 100 * (base - method) / base
    assert abs(per_seed.mean() - value) > 10  # the biased estimator is far off here


def test_pool_seeds_pools_improvement_rows_as_a_ratio_of_means():
    rows = pd.DataFrame({"key": "k", "metric": "improvement", "seed": range(5),
                         "a_value": [0.10, 0.05, 0.09, 0.05, 0.06],
                         "b_value": [0.20, 0.02, 0.15, 0.10, 0.12],
                         "value": [50, np.nan, 40, 50, 50], "lo": 0.0, "hi": 1.0})  # fmt: skip
    pooled = verdicts.pool_seeds(rows, by=["key"]).iloc[0]
    assert pooled["n_seeds"] == 5  # the seed whose own improvement was undefined still counts
    assert pooled["value"] == pytest.approx(100 * (0.59 - 0.35) / 0.59)


@given(st.lists(st.floats(0.0001, 1.0), min_size=1, max_size=8))
@settings(max_examples=60, deadline=None)
def test_holm_adjusted_p_values_are_monotone_at_least_raw_and_at_most_one(ps):
    adjusted = verdicts.holm(ps)
    assert np.all(adjusted >= np.asarray(ps) - 1e-12) and np.all(adjusted <= 1)
    order = np.argsort(ps)
    assert np.all(np.diff(adjusted[order]) >= -1e-12)


def test_holm_multiplies_the_smallest_p_by_the_family_size_and_keeps_nan():
    adjusted = verdicts.holm([0.01, 0.04, np.nan, 0.03])
    assert adjusted[0] == pytest.approx(0.03)
    assert np.isnan(adjusted[2]) and adjusted[1] == pytest.approx(0.06)


def test_seeds_needed_grows_with_the_spread_and_shrinks_with_the_effect():
    assert verdicts.seeds_needed(0.05, 0.02) > verdicts.seeds_needed(0.02, 0.02) >= 2
    assert verdicts.seeds_needed(0.05, 0.05) < verdicts.seeds_needed(0.05, 0.02)
    # textbook check: effect = sd gives about 10 seeds for 80% power at alpha 0.05
    assert 9 <= verdicts.seeds_needed(1.0, 1.0) <= 11


def test_improvement_is_the_relative_gap_reduction_with_a_paired_interval():
    table = predictions(1500, 7)
    biased = table.assign(
        score_pos=np.where(table["sex"] == "M", table["score_pos"] * 0.7, table["score_pos"])
    )
    base = fairness.report(biased, groups=["sex"], thresholds=0.5, n_boot=200, intersections=False)
    fair = fairness.report(table, groups=["sex"], thresholds=0.5, n_boot=200, intersections=False)
    result = verdicts.improvement(base, fair, "equal_opportunity", attribute="sex")
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
    ("lo", "hi", "higher_better", "word"),
    [
        (0.01, 0.05, True, "better"),
        (-0.05, -0.01, True, "worse"),
        (-0.05, -0.01, False, "better"),  # a smaller gap is the better one
        (-0.01, 0.05, True, "no detectable difference"),
        (np.nan, np.nan, True, "no detectable difference"),
    ],
)
def test_verdict_names_a_winner_only_when_the_difference_excludes_zero(lo, hi, higher_better, word):
    assert verdicts.verdict(lo, hi, higher_better=higher_better) == word


def _report(table, seed=0):
    return fairness.report(table, groups=["sex"], thresholds=0.5, n_boot=200, seed=seed,
                           intersections=False)  # fmt: skip


def test_identical_predictions_give_no_detectable_difference():
    table = predictions(800, 11)
    d = verdicts.paired_difference(_report(table), _report(table), "f1", attribute="sex", group="F")
    assert d.value == 0 and d.lo == 0 and d.hi == 0
    assert d.verdict == "no detectable difference"


def test_a_constructed_clear_win_is_better_and_paired_beats_unpaired():
    table = predictions(1500, 12)
    y = table["y_true"].to_numpy()
    shift = np.where(y == 1, 0.04, -0.04)
    sharper = table.assign(score_pos=np.clip(table["score_pos"] + shift, 0, 1))
    sharper["score_neg"] = 1 - sharper["score_pos"]
    win, base = _report(sharper), _report(table)
    d = verdicts.paired_difference(win, base, "auroc", attribute="sex", group="F")
    assert d.verdict == "better" and d.lo > 0
    widths = [
        r.hi - r.lo
        for r in (win.by_group, base.by_group)
        for r in [r.query("group == 'F' and metric == 'auroc'").iloc[0]]
    ]
    unpaired = np.hypot(*widths)  # the width if the two test-set draws were independent
    assert d.hi - d.lo < unpaired / 2  # pairing cancels the shared test-set noise


def test_reports_on_other_patients_are_not_paired():
    table = predictions(600, 13)
    with pytest.raises(ValueError, match="not paired"):
        verdicts.paired_difference(
            _report(table), _report(table, seed=1), "f1", attribute="sex", group="F"
        )


def test_pooled_verdict_needs_five_seeds_and_an_interval_that_excludes_zero():
    def seeds(values):
        return pd.DataFrame({"key": "k", "metric": "f1", "seed": range(len(values)),
                             "value": values, "lo": np.array(values) - 0.1,
                             "hi": np.array(values) + 0.1})  # fmt: skip

    clear = verdicts.pool_seeds(seeds([0.05, 0.06, 0.04, 0.05, 0.055]), by=["key"]).iloc[0]
    assert clear.verdict == "better" and clear.lo > 0 and clear.n_seeds == 5
    assert clear.boot_lo == pytest.approx(clear.value - 0.1)
    noisy = verdicts.pool_seeds(seeds([0.1, -0.08, 0.05, -0.04, 0.02]), by=["key"]).iloc[0]
    assert noisy.verdict == "no detectable difference" and noisy.lo < 0 < noisy.hi
    few = verdicts.pool_seeds(seeds([0.05, 0.06, 0.04]), by=["key"]).iloc[0]
    assert few.verdict == "inconclusive"
    twice = pd.concat([seeds([0.05, 0.06, 0.04]), seeds([0.05, 0.06])]).assign(run_id="r")
    with pytest.raises(ValueError, match=r"seed\(s\) \[0, 1\] appear in more than one run"):
        verdicts.pool_seeds(twice, by=["key"])


def test_this_run_is_matched_to_pooled_rows_read_back_from_csv():
    run = pd.DataFrame({"comparison": "sharing", "setting": "skin", "a": [1, 2], "b": 0,
                        "group": "dark", "metric": "f1", "value": [0.01, -0.02],
                        "lo": [-0.01, -0.05], "hi": [0.03, 0.01],
                        "verdict": "no detectable difference"})  # fmt: skip
    noise = [0.0, 0.02, -0.02, 0.04, -0.04]
    sweep = pd.concat(  # as read back from CSV: the integer keys are text
        [
            run.astype({"a": str, "b": str}).assign(seed=k, value=run["value"] + e)
            for k, e in enumerate(noise)
        ]  # fmt: skip
    )
    out = verdicts.beside_run(verdicts.pool_seeds(sweep, by=verdicts.COMPARISON_KEYS), run)
    assert out["this run"].tolist() == ["0.010 [-0.010, 0.030]", "-0.020 [-0.050, 0.010]"]
    assert out["agrees"].all()
    partial = verdicts.beside_run(verdicts.pool_seeds(sweep, by=verdicts.COMPARISON_KEYS), run[:1])
    assert partial["agrees"].tolist() == [True, None]  # no row in this run: nothing to agree


def test_two_sweeps_stand_side_by_side_each_pooled_over_its_own_seeds():
    def sweep(values, keys=("k1",)):
        return pd.DataFrame({"key": [k for k in keys for _ in values], "metric": "f1",
                             "seed": list(range(len(values))) * len(keys),
                             "value": list(values) * len(keys), "lo": -1.0, "hi": 1.0})  # fmt: skip

    new, old = sweep([0.05, 0.06, 0.04, 0.05, 0.055]), sweep([0.1, -0.08, 0.05], keys=("k1", "k2"))
    both = verdicts.side_by_side({"new": new, "old": old}, by=["key"])
    assert list(both.columns) == ["new", "old"] and both.index.tolist() == ["k1", "k2"]
    assert both.loc["k1", "new"].endswith("better (5 seeds)")
    assert both.loc["k1", "old"].endswith("inconclusive (3 seeds)")
    assert pd.isna(both.loc["k2", "new"])  # a comparison only the old sweep made


def test_pooled_effectiveness_is_worded_as_higher_is_better():
    def rows(values):
        return pd.DataFrame({"comparison": "soundness", "setting": "do(x)", "a": "learned",
                             "b": "chance", "group": "a → b", "metric": "effectiveness",
                             "seed": range(5), "value": values, "lo": -1.0, "hi": 1.0})  # fmt: skip

    below = rows([-0.30, -0.25, -0.35, -0.28, -0.30])
    above = rows([0.30, 0.25, 0.35, 0.28, 0.30])
    assert verdicts.pool_seeds(below, by=verdicts.COMPARISON_KEYS)["verdict"].item() == "worse"
    assert verdicts.pool_seeds(above, by=verdicts.COMPARISON_KEYS)["verdict"].item() == "better"
