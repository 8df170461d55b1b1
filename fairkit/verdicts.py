"""How the study words a comparison: paired intervals within a run, pooled over seeds, one verdict.

A comparison of method A with method B on one test set is the *paired* difference A - B: the same
bootstrap replicates (the same resampled patients) for both, so the test set's own noise cancels.
Over seeds (each with its own training and test draws) the per-seed differences are pooled by a
t interval. ``verdict`` is the only place that turns an interval into words: "better" or
"worse" only when the 95% interval of the difference excludes zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from fairkit.bootstrap import centred_interval
from fairkit.fairness import HIGHER_IS_BETTER, Report

VERDICTS = ("better", "worse", "no detectable difference")
MIN_SEEDS = 5  # fewer seeds than this give "inconclusive", whatever the interval
INCONCLUSIVE = "inconclusive"
COMPARISON_KEYS = ["comparison", "setting", "a", "b", "group", "metric"]  # one comparison's key


def interval(value: float, lo: float, hi: float, *, digits: int = 3, unit: str = "") -> str:
    """``value [lo, hi]`` (three decimals): how the book prints an estimate.

    An interval with an infinite bound (Fieller's, when a ratio's denominator is not
    distinguishable from zero) reads ``[unbounded]``.
    """
    if np.isinf(lo) or np.isinf(hi):
        return f"{value:.{digits}f}{unit} [unbounded]"
    return f"{value:.{digits}f}{unit} [{lo:.{digits}f}, {hi:.{digits}f}]"


def with_intervals(table: pd.DataFrame) -> pd.Series:
    """Each row's ``value [lo, hi]`` (``interval``), as a column."""
    return pd.Series(
        [interval(r.value, r.lo, r.hi) for r in table.itertuples()],
        index=table.index,
        dtype=object,
    )


HIGHER_ALSO = {
    "effectiveness",  # a counterfactual that carries the intervened value
    "improvement",  # a gap's reduction in % (FairGen's metric)
}


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` is the better one (AUROC yes; gaps, FPR, ECE no)."""
    return metric.removeprefix("worst_").removeprefix("mean_") in HIGHER_IS_BETTER | HIGHER_ALSO


def verdict(lo: float, hi: float, *, higher_better: bool) -> str:
    """The wording of a difference A - B with 95% interval [lo, hi].

    "better" when the interval lies wholly on the good side of zero, "worse" on the bad side,
    otherwise "no detectable difference" (also when the interval is NaN).
    """
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return VERDICTS[2]
    if lo > 0 or hi < 0:
        good = (lo > 0) == higher_better
        return VERDICTS[0] if good else VERDICTS[1]
    return VERDICTS[2]


NARROWING = ("raised", "levelled down", "no gain")


def narrowing(group_verdicts) -> str:
    """How a gap that narrowed came about, from each group's verdict on the metric.

    "raised": some group does detectably better; "levelled down": none does and some do worse;
    "no gain": no group changes detectably. A narrower gap is a fairness gain only when raised.
    """
    if "better" in group_verdicts:
        return NARROWING[0]
    return NARROWING[1] if "worse" in group_verdicts else NARROWING[2]


@dataclass(frozen=True)
class Difference:
    """A paired difference A - B of one metric on one test set, with its 95% interval."""

    metric: str
    attribute: str
    group: str | None
    a: float
    b: float
    value: float
    lo: float
    hi: float

    @property
    def verdict(self) -> str:
        """How A compares with B in this run (``verdict``)."""
        return verdict(self.lo, self.hi, higher_better=higher_is_better(self.metric))


def require_paired(a: Report, b: Report) -> None:
    """Refuse to pair two reports whose bootstrap did not resample the same patients."""
    if not a.sample or a.sample != b.sample:
        raise ValueError(
            "the two reports are not paired: their test patients, n_boot or bootstrap seed "
            f"differ (fingerprints {a.sample!r} and {b.sample!r})"
        )


@dataclass(frozen=True)
class Improvement:
    """Relative reduction of a gap, in %, with a paired-bootstrap 95% interval."""

    metric: str
    attribute: str
    baseline: float
    method: float
    percent: float
    lo: float
    hi: float


def improvement(baseline: Report, method: Report, metric: str, *, attribute: str) -> Improvement:
    """How much ``method`` shrinks a gap of ``baseline``: 100 (base - method) / base.

    Both reports must come from the same test rows and bootstrap seed, so replicate b of each
    resamples the same patients (a paired interval).
    """
    require_paired(baseline, method)
    key = (attribute, metric)
    base, new = (
        baseline.value(metric, attribute=attribute),
        method.value(metric, attribute=attribute),
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        rep = 100 * (baseline.replicates[key] - method.replicates[key]) / baseline.replicates[key]
    percent = 100 * (base - new) / base if base else np.nan
    lo, hi = centred_interval(percent, rep[np.isfinite(rep)])
    return Improvement(metric, attribute, base, new, percent, lo, hi)


def paired_difference(
    a: Report, b: Report, metric: str, *, attribute: str, group: str | None = None
) -> Difference:
    """A - B for a group's metric (``group``) or a gap/worst-group value (no group), paired.

    Raises:
        ValueError: the reports did not resample the same patients (``require_paired``).
    """
    require_paired(a, b)
    key = (attribute, metric) if group is None else (attribute, str(group), metric)
    value_a = a.value(metric, attribute=attribute, group=group)
    value_b = b.value(metric, attribute=attribute, group=group)
    estimate = value_a - value_b
    lo, hi = centred_interval(estimate, a.replicates[key] - b.replicates[key])
    return Difference(metric, attribute, group, value_a, value_b, estimate, lo, hi)


def paired_table(
    reports: dict, pairs, attribute: str, metrics=("f1",), gap_metrics=(), **labels
) -> pd.DataFrame:
    """Paired differences a - b (same test patients, same replicates) for each (a, b) in ``pairs``.

    ``reports`` maps a label to a ``fairness.Report`` of the same test set. Rows (a, b, group,
    metric, a_value, b_value, value, lo, hi, verdict) plus ``labels``: per group for
    ``metrics`` and over groups (group "all") for ``gap_metrics``; ``verdict`` is this run's
    wording, before any pooling over seeds.
    """
    rows = []
    for a, b in pairs:
        groups = sorted(reports[a].by_group.query("attribute == @attribute")["group"].unique())
        keys = [(m, g) for m in metrics for g in groups] + [(m, None) for m in gap_metrics]
        for metric, group in keys:
            d = paired_difference(reports[a], reports[b], metric, attribute=attribute, group=group)
            rows.append(
                {
                    "a": a,
                    "b": b,
                    "group": group if group is not None else "all",
                    "metric": metric,
                    "a_value": d.a,
                    "b_value": d.b,
                    "value": d.value,
                    "lo": d.lo,
                    "hi": d.hi,
                    "verdict": d.verdict,
                }
            )
    return pd.DataFrame(rows).assign(**labels)


def pool_seeds(differences: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Pool per-seed paired differences (columns ``seed``, ``value``, ``lo``, ``hi``, ``metric``).

    One row per ``by`` key: the mean difference over seeds, its seed-level 95% t interval
    (``lo``, ``hi``: the between-seed spread, which holds training and test-set noise), the
    mean per-seed bootstrap interval (``boot_lo``, ``boot_hi``: the test-set noise alone), the
    number of seeds and the verdict, "inconclusive" under ``MIN_SEEDS`` seeds. A gap's
    improvement in % is pooled as a ratio of means over every seed (``pooled_improvement``),
    not as a mean of per-seed ratios, which is biased. A seed that appears twice for one key (two kept runs of the same setting) is refused: counted twice it
    would narrow the interval.
    """
    twice = differences[differences.duplicated([*by, "seed"], keep=False)]
    if len(twice):
        runs = sorted(set(twice.get("run_id", pd.Series(["?"])).astype(str)))
        raise ValueError(
            f"seed(s) {sorted(set(twice['seed']))} appear in more than one run for the same "
            f"comparison; keep one run per seed (runs: {', '.join(runs)})"
        )
    rows = []
    for key, part in differences.groupby(by, sort=False, dropna=False):
        metric = part["metric"].iloc[0]
        if metric == "improvement" and {"a_value", "b_value"} <= set(part):
            mean, lo, hi, n = pooled_improvement(part["a_value"], part["b_value"])
        else:
            values = part["value"].to_numpy(float)
            n = int(np.isfinite(values).sum())  # a seed without the number (e.g. invalid judge)
            mean, lo, hi = t_interval(values)
        words = (
            verdict(lo, hi, higher_better=higher_is_better(metric))
            if n >= MIN_SEEDS
            else INCONCLUSIVE
        )
        rows.append(
            {
                **dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True)),
                "value": mean,
                "lo": lo,
                "hi": hi,
                "boot_lo": float(part["lo"].mean()),
                "boot_hi": float(part["hi"].mean()),
                "n_seeds": n,
                "verdict": words,
            }
        )
    return pd.DataFrame(rows)


def side_by_side(sweeps: dict[str, pd.DataFrame], *, by: list[str]) -> pd.DataFrame:
    """Several sweeps' pooled differences, a column each: ``value [lo, hi] verdict (n seeds)``.

    For a changed default: the same comparisons, each sweep pooled over its own seeds, so the
    old and the new setting's verdicts stand side by side. Keys are compared as text.
    """
    columns = {}
    for name, table in sweeps.items():
        pooled = pool_seeds(table, by=by)
        said = [
            f"{interval(r.value, r.lo, r.hi)} {r.verdict} ({r.n_seeds} seed{'s' * (r.n_seeds != 1)})"
            for r in pooled.itertuples()
        ]
        columns[name] = pd.Series(said, index=pooled[by].astype(str).set_index(by).index)
    return pd.DataFrame(columns)


def beside_run(pooled: pd.DataFrame, this_run: pd.DataFrame) -> pd.DataFrame:
    """Pooled verdicts with this run's own difference and verdict beside them.

    Columns added: ``this run`` (``value [lo, hi]``), ``verdict (this run)`` and ``agrees``
    (empty where this run made no such comparison, e.g. a section left to the sweep). Keys are
    compared as text, since a table read back from CSV holds "1" where this run has 1.
    """
    text = {k: str for k in COMPARISON_KEYS}
    mine = this_run.astype(text)
    mine = mine.assign(**{"this run": with_intervals(mine)})[
        [*COMPARISON_KEYS, "this run", "verdict"]
    ]
    out = pooled.astype(text).merge(
        mine, on=COMPARISON_KEYS, how="left", suffixes=("", " (this run)")
    )
    same = out["verdict"] == out["verdict (this run)"]
    out["agrees"] = same.astype(object).where(out["verdict (this run)"].notna(), None)
    return out


# --------------------------------------------------------------------------- tests over seeds
ALPHA = 0.05  # every interval of the book is 95%; Holm spends this over a claim's family
POWER = 0.8  # what "enough seeds" means: 80% power to see the smallest effect of interest


def t_interval(values, *, level: float = 1 - ALPHA) -> tuple[float, float, float]:
    """Mean of per-seed ``values`` and its seed-level t interval (NaN bounds under two seeds)."""
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    n = len(values)
    if n == 0:
        return np.nan, np.nan, np.nan
    mean = float(values.mean())
    if n < 2:
        return mean, np.nan, np.nan
    half = stats.t.ppf(0.5 + level / 2, n - 1) * values.std(ddof=1) / np.sqrt(n)
    return mean, mean - half, mean + half


def t_pvalue(values, *, null: float = 0.0) -> float:
    """Two-sided p-value of a one-sample t test that the per-seed ``values`` average ``null``."""
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    if len(values) < 2:
        return np.nan
    if np.ptp(values) == 0:  # no spread: the mean either is the null or is certainly not
        return 1.0 if values[0] == null else 0.0
    return float(stats.ttest_1samp(values, null).pvalue)


def fieller(numerators, denominators, *, level: float = 1 - ALPHA) -> tuple[float, float, float]:
    """Ratio of means Σx / Σy over paired seeds, with Fieller's interval (Fieller 1954).

    The interval is every r for which the per-seed values x - r y pass a one-sample t test of
    mean zero at ``level``: the roots of (x̄ - r ȳ)² = t² (s_xx - 2 r s_xy + r² s_yy) / n. When
    the denominator's mean is not itself distinguishable from zero the set is unbounded, and
    the interval is (-inf, inf): the ratio is not estimable from these seeds. No seed is
    dropped; a pair with a missing value is.
    """
    x, y = np.asarray(numerators, float), np.asarray(denominators, float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n = len(x)
    if n < 2 or y.mean() == 0:
        return np.nan, np.nan, np.nan
    ratio = float(x.mean() / y.mean())
    t2 = stats.t.ppf(0.5 + level / 2, n - 1) ** 2
    cov = np.cov(x, y, ddof=1) / n  # covariance of the two means
    a = y.mean() ** 2 - t2 * cov[1, 1]
    b = -2 * (x.mean() * y.mean() - t2 * cov[0, 1])
    c = x.mean() ** 2 - t2 * cov[0, 0]
    disc = b * b - 4 * a * c
    if a <= 0 or disc < 0:
        return ratio, -np.inf, np.inf
    root = np.sqrt(disc)
    return ratio, float((-b - root) / (2 * a)), float((-b + root) / (2 * a))


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm 1979), for one family of tests; NaN stays NaN."""
    p = np.asarray(pvalues, float)
    out = np.full_like(p, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    order = finite[np.argsort(p[finite])]
    m, running = len(order), 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * p[i]))
        out[i] = running
    return out


def seeds_needed(sd: float, effect: float, *, alpha: float = ALPHA, power: float = POWER) -> int:
    """Seeds a two-sided one-sample t test needs to see ``effect`` with ``power`` at spread ``sd``.

    From the noncentral t distribution: the smallest n whose test at ``alpha`` rejects with
    probability ``power`` when the true mean is ``effect`` and seeds spread by ``sd``.
    """
    if not (np.isfinite(sd) and sd > 0 and effect):
        return 2
    n = 2
    while n < 100_000:
        df, shift = n - 1, abs(effect) / sd * np.sqrt(n)
        crit = stats.t.ppf(1 - alpha / 2, df)
        if stats.nct.sf(crit, df, shift) + stats.nct.cdf(-crit, df, shift) >= power:
            return n
        n += 1 if n < 50 else max(1, n // 10)
    return n


def pooled_improvement(gap_method, gap_baseline) -> tuple[float, float, float, int]:
    """A gap's reduction in % over seeds, 100 (Σ base - Σ method) / Σ base, Fieller's interval.

    FairGen's source reports an "improvement" it never defines; we read it as this relative
    reduction of the per-group accuracy gap. As a ratio of means over every seed with both
    gaps (no seed dropped because its baseline gap is small), it is not the biased mean of
    per-seed ratios. Returns (value, lo, hi, seeds).
    """
    method, base = np.asarray(gap_method, float), np.asarray(gap_baseline, float)
    keep = np.isfinite(method) & np.isfinite(base)
    value, lo, hi = fieller(100 * (base[keep] - method[keep]), base[keep])
    return value, lo, hi, int(keep.sum())
