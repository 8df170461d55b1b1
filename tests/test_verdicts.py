"""The statistics behind the verdicts: Fieller's ratio of means, Holm, power, pooled improvement."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fairkit import verdicts


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
