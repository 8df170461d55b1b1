"""How the study prints an estimate and words a comparison: one place for both."""

from __future__ import annotations

import pandas as pd


def interval(value: float, lo: float, hi: float) -> str:
    """``value [lo, hi]`` to three decimals: how the book prints an estimate."""
    return f"{value:.3f} [{lo:.3f}, {hi:.3f}]"


def with_intervals(table: pd.DataFrame) -> pd.Series:
    """Each row's ``value [lo, hi]`` (``interval``), as a column."""
    return pd.Series(
        [interval(r.value, r.lo, r.hi) for r in table.itertuples()],
        index=table.index,
        dtype=object,
    )


VERDICTS = ("better", "worse", "no detectable difference")


def verdict(a, b) -> str:
    """The one place where a comparison of ``a`` with ``b`` is worded (objects with lo, hi).

    ``better`` or ``worse`` only when the two 95% intervals do not overlap; otherwise
    ``no detectable difference``. Conservative: non-overlap is a stricter test than an
    interval of the paired difference, which is to replace it.
    """
    if a.lo > b.hi:
        return VERDICTS[0]
    if a.hi < b.lo:
        return VERDICTS[1]
    return VERDICTS[2]
