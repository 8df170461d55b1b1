"""Bias injection by selection: under-representation, spurious correlation, label noise.

Hand-written (new science), after Stanley et al.'s simulated-bias framework: the causal model
stays the same, and the sampler picks the rows that make a biased cohort, hitting each requested
strength by exact quotas per cell (group x diagnosis x artifact) instead of by chance.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class UnderRepresent:
    """Make ``group`` of ``attribute`` a ``fraction`` of the cohort (or of one diagnosis)."""

    attribute: str
    group: str
    fraction: float
    diagnosis: str | None = None


@dataclass(frozen=True)
class Spurious:
    """Tie an artifact to a diagnosis with ``strength`` in [0, 1].

    ``strength`` is the difference in artifact rate between the diagnosis and the rest:
    P(artifact | dx) = p0 + s (1 - p0) and P(artifact | not dx) = p0 (1 - s), with p0 the
    artifact's natural rate. 0 keeps them independent; 1 makes the artifact a perfect shortcut.
    """

    artifact: str
    diagnosis: str | tuple[str, ...]
    strength: float
    value: object = 1

    @property
    def diagnoses(self) -> tuple[str, ...]:
        """The diagnosis or diagnoses the artifact is tied to."""
        return (self.diagnosis,) if isinstance(self.diagnosis, str) else tuple(self.diagnosis)


@dataclass(frozen=True)
class LabelNoise:
    """Flip the observed label of a ``rates[group]`` fraction of each group of ``attribute``."""

    attribute: str
    rates: dict = field(default_factory=dict)


def as_bias(kind, spec):
    """Accept a bias as its dataclass or as a plain dict of its fields (from notebook params)."""
    if spec is None or isinstance(spec, kind):
        return spec
    if not isinstance(spec, dict):
        raise TypeError(f"{kind.__name__} must be given as a dict or {kind.__name__}; got {spec!r}")
    return kind(**spec)


def _check(table: pd.DataFrame, under: UnderRepresent | None, spurious: Spurious | None) -> None:
    if under is not None:
        if under.attribute not in table:
            raise ValueError(f"under-representation: no attribute {under.attribute!r}")
        if not 0 <= under.fraction <= 1:
            raise ValueError(
                f"under-representation fraction must lie in [0, 1]; got {under.fraction}"
            )
        if under.group not in set(table[under.attribute]):
            raise ValueError(f"{under.attribute} has no group {under.group!r}")
    if spurious is not None:
        if spurious.artifact not in table:
            raise ValueError(f"spurious correlation: no artifact column {spurious.artifact!r}")
        if not 0 <= spurious.strength <= 1:
            raise ValueError(f"spurious strength must lie in [0, 1]; got {spurious.strength}")


def target_cells(
    pool: pd.DataFrame, n: int, under: UnderRepresent | None, spurious: Spurious | None
) -> pd.Series:
    """Counts per (group, diagnosis, artifact) cell: q(y) q(g | y) q(a | y, g), scaled to ``n``."""
    _check(pool, under, spurious)
    g = pool[under.attribute].eq(under.group) if under else pd.Series(False, index=pool.index)
    a = (
        pool[spurious.artifact].eq(spurious.value)
        if spurious
        else pd.Series(False, index=pool.index)
    )
    cells = pd.DataFrame({"y": pool["diagnosis"], "g": g, "a": a})
    q_y = cells["y"].value_counts(normalize=True)
    q = {}
    for y, p_y in q_y.items():
        in_y = cells[cells["y"] == y]
        p_g = in_y["g"].mean()
        if under is not None and (under.diagnosis is None or under.diagnosis == y):
            p_g = under.fraction
        for grp, p_grp in ((True, p_g), (False, 1 - p_g)):
            in_yg = in_y[in_y["g"] == grp]
            p_a = in_yg["a"].mean() if len(in_yg) else 0.0
            if spurious is not None:
                p0 = cells["a"].mean()
                p_a = (
                    p0 + spurious.strength * (1 - p0)
                    if y in spurious.diagnoses
                    else p0 * (1 - spurious.strength)
                )
            q[(y, grp, True)] = p_y * p_grp * p_a
            q[(y, grp, False)] = p_y * p_grp * (1 - p_a)
    return _largest_remainder(pd.Series(q), n)


def _largest_remainder(q: pd.Series, n: int) -> pd.Series:
    exact = q / q.sum() * n
    counts = np.floor(exact).astype(int)
    short = n - counts.sum()
    order = np.argsort(-(exact - counts).to_numpy(), kind="stable")[:short]
    counts.iloc[order] += 1
    return counts


def select(
    pool: pd.DataFrame,
    n: int,
    rng: np.random.Generator,
    *,
    under: UnderRepresent | None = None,
    spurious: Spurious | None = None,
) -> np.ndarray | None:
    """Positions of ``n`` pool rows meeting the quotas, shuffled; None if the pool is too small."""
    counts = target_cells(pool, n, under, spurious)
    g = pool[under.attribute].eq(under.group).to_numpy() if under else np.zeros(len(pool), bool)
    a = (
        pool[spurious.artifact].eq(spurious.value).to_numpy()
        if spurious
        else np.zeros(len(pool), bool)
    )
    y = pool["diagnosis"].to_numpy()
    chosen = []
    for (dx, grp, art), k in counts.items():
        if k == 0:
            continue
        rows = np.flatnonzero((y == dx) & (g == grp) & (a == art))
        if len(rows) < k:
            return None
        chosen.append(rng.choice(rows, size=k, replace=False))
    index = np.concatenate(chosen) if chosen else np.empty(0, dtype=int)
    return rng.permutation(index)


def add_label_noise(meta: pd.DataFrame, noise: LabelNoise, n_classes: int, rng) -> pd.DataFrame:
    """Flip exactly round(rate x group size) labels per group to another class, at random."""
    if noise.attribute not in meta:
        raise ValueError(f"label noise: no attribute {noise.attribute!r}")
    meta = meta.copy()
    flipped = np.zeros(len(meta), dtype=bool)
    for group, rate in noise.rates.items():
        if not 0 <= rate <= 1:
            raise ValueError(f"label-noise rate of {group!r} must lie in [0, 1]; got {rate}")
        rows = np.flatnonzero(meta[noise.attribute].to_numpy() == group)
        flipped[rng.choice(rows, size=round(rate * len(rows)), replace=False)] = True
    shift = rng.integers(1, n_classes, size=len(meta))
    meta["label"] = np.where(flipped, (meta["label"] + shift) % n_classes, meta["label"])
    meta["label_flipped"] = flipped
    return meta


def measured_strengths(meta: pd.DataFrame, *, under=None, spurious=None, label_noise=None) -> dict:
    """What the sampled cohort actually shows, for checking the requested strengths."""
    out = {}
    if under is not None:
        rows = meta if under.diagnosis is None else meta[meta["diagnosis"] == under.diagnosis]
        out["under_fraction"] = float(rows[under.attribute].eq(under.group).mean())
    if spurious is not None:
        a = meta[spurious.artifact].eq(spurious.value)
        pos = meta["diagnosis"].isin(spurious.diagnoses)
        out["spurious_strength"] = float(a[pos].mean() - a[~pos].mean())
    if label_noise is not None:
        for group in label_noise.rates:
            rows = meta[meta[label_noise.attribute] == group]
            out[f"label_noise_{group}"] = float(rows["label_flipped"].mean())
    return out


def strength_table(meta: pd.DataFrame, *, under=None, spurious=None) -> pd.DataFrame:
    """Requested against measured strength of each injected bias, one row each."""
    measured = measured_strengths(meta, under=under, spurious=spurious)
    rows = []
    if under is not None:
        rows.append(("under_fraction", under.fraction, measured["under_fraction"]))
    if spurious is not None:
        rows.append(("spurious_strength", spurious.strength, measured["spurious_strength"]))
    return pd.DataFrame(rows, columns=["quantity", "requested", "measured"])
