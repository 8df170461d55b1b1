"""Structural causal models as named mechanisms with explicit parents and exogenous noise.

Hand-written (new science): a small SCM engine in the sense of Pearl's abduction-action-
prediction. Every sample carries its exogenous noise columns (``u_*``), so a counterfactual keeps
the noise, sets the intervened variables and recomputes only their descendants.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from fairkit import seeds

KINDS = ("patient", "external", "disease", "appearance")


@dataclass(frozen=True)
class Mechanism:
    """One structural equation ``name := fn(parents, noise)``.

    Attributes:
        name: the variable it sets.
        parents: endogenous variables it reads.
        noise: exogenous columns it reads; each is ``"uniform"`` or ``"normal"``.
        fn: called with a mapping that holds exactly the parents, the noise and ``cfg``.
        kind: covariate taxonomy (patient, external, disease, appearance), for datasheets.
        values: the domain of a categorical variable (None for a continuous one).
        bounds: the range (low, high) of a continuous variable, e.g. where its equation clips it
            (None: any finite number).
        derived: a deterministic relabelling of its parents (e.g. skin group from skin type),
            which cannot be intervened on by itself.
    """

    name: str
    parents: tuple[str, ...]
    noise: Mapping[str, str]
    fn: Callable[[Mapping[str, Any]], np.ndarray]
    kind: str
    values: tuple | None = None
    derived: bool = False
    doc: str = ""
    bounds: tuple[float, float] | None = None

    @property
    def domain(self) -> str:
        """The values an intervention may set, in words, for error messages."""
        if self.values is not None:
            return str(self.values)
        if self.bounds is None:
            return "finite numbers"
        return f"finite numbers in [{self.bounds[0]}, {self.bounds[1]}]"

    def outside(self, value: Any) -> list:
        """The entries of an intervention ``value`` (scalar or array) outside the domain."""
        array = np.atleast_1d(np.asarray(value, dtype=object))
        if self.values is not None:  # by kind too: True == 1 and 1.0 == 1, yet not a 0/1 code
            kinds = {(type(_plain(v)), v) for v in self.values}
            return sorted(
                {v for v in array.tolist() if (type(_plain(v)), v) not in kinds}, key=repr
            )
        low, high = self.bounds or (-np.inf, np.inf)
        return [v for v in array.tolist() if not _is_number(v) or not low <= v <= high]


@dataclass
class SCM:
    """A list of mechanisms in topological order plus a renderer of images from their values."""

    modality: str
    mechanisms: Sequence[Mechanism]
    render: Callable[..., np.ndarray]
    classes: tuple[str, ...]
    channels: int
    cfg: dict[str, Any] = field(default_factory=dict)
    render_noise: Mapping[str, str] = field(default_factory=dict)
    textures: tuple[str, ...] = ()

    def __post_init__(self):
        known: set[str] = set()
        for m in self.mechanisms:
            missing = set(m.parents) - known
            if missing:
                raise ValueError(f"{m.name}: parents {missing} are not defined before it")
            if m.kind not in KINDS:
                raise ValueError(f"{m.name}: kind must be one of {KINDS}")
            known.add(m.name)

    @property
    def variables(self) -> list[str]:
        """Endogenous variables in topological order."""
        return [m.name for m in self.mechanisms]

    @property
    def noise_columns(self) -> dict[str, str]:
        """Every exogenous column with its distribution: the mechanisms' and the renderer's."""
        columns = {k: v for m in self.mechanisms for k, v in m.noise.items()}
        return columns | dict(self.render_noise) | {t: "integer" for t in self.textures}

    def mechanism(self, name: str) -> Mechanism:
        """Return the mechanism that sets ``name``."""
        for m in self.mechanisms:
            if m.name == name:
                return m
        raise KeyError(f"{self.modality} has no variable {name!r}; variables: {self.variables}")

    def edges(self) -> list[tuple[str, str]]:
        """The causal graph as (parent, child) pairs."""
        return [(p, m.name) for m in self.mechanisms for p in m.parents]

    def descendants(self, names) -> set[str]:
        """All variables downstream of ``names`` (not including them)."""
        found: set[str] = set()
        frontier = set(names)
        for m in self.mechanisms:
            if frontier & set(m.parents) or found & set(m.parents):
                found.add(m.name)
        return found - set(names)

    def sample_noise(self, n: int, seed: int) -> pd.DataFrame:
        """Draw the exogenous noise of ``n`` samples; each column has its own seeded stream."""
        out = {}
        for col, dist in self.noise_columns.items():
            rng = seeds.rng(seed, "noise", col)
            if dist == "normal":
                out[col] = rng.standard_normal(n)
            elif dist == "integer":
                out[col] = rng.integers(0, 2**31, n)
            else:
                out[col] = rng.random(n)
        return pd.DataFrame(out)

    def solve(self, noise: pd.DataFrame, do: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Evaluate every mechanism in order; ``do`` sets variables instead of their equation."""
        do = self._check_do({} if do is None else do)
        values: dict[str, Any] = {c: noise[c].to_numpy() for c in noise.columns}
        n = len(noise)
        for m in self.mechanisms:
            if m.name in do:
                values[m.name] = _broadcast(do[m.name], n)
            else:
                values[m.name] = self._evaluate(m, values)
        return pd.DataFrame(values, index=noise.index)

    def counterfactual_table(self, table: pd.DataFrame, do: Mapping[str, Any]) -> pd.DataFrame:
        """Same noise, intervened variables set, only their descendants recomputed."""
        do = self._check_do(do)
        out = table.copy()
        changed = set(do)
        values = {c: out[c].to_numpy() for c in out.columns}
        for m in self.mechanisms:
            if m.name in do:
                values[m.name] = _broadcast(do[m.name], len(out))
            elif changed & set(m.parents):
                values[m.name] = self._evaluate(m, values)
                changed.add(m.name)
            else:
                continue
            out[m.name] = values[m.name]
        return out

    def _evaluate(self, m: Mechanism, values: Mapping[str, Any]) -> np.ndarray:
        args = {k: values[k] for k in (*m.parents, *m.noise)}
        args["cfg"] = self.cfg
        return np.asarray(m.fn(args))

    def _check_do(self, do: Mapping[str, Any]) -> dict[str, Any]:
        """Refuse interventions on unknown or derived variables and values outside the domain."""
        if not isinstance(do, Mapping):
            raise TypeError(f"do must be a mapping of variable to value; got {do!r}")
        for name, value in do.items():
            m = self.mechanism(name)
            if m.derived:
                raise ValueError(
                    f"{name} is derived from {', '.join(m.parents)}; intervene on that instead"
                )
            bad = m.outside(value)
            if bad:
                raise ValueError(f"do({name}={bad[:5]}): allowed values are {m.domain}")
        return dict(do)


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds (``np.int64(1)`` as ``1``)."""
    return value.item() if isinstance(value, np.generic) else value


def _is_number(value: Any) -> bool:
    """A finite real number (not a bool, not text)."""
    return (
        isinstance(value, int | float | np.integer | np.floating)
        and not isinstance(value, bool | np.bool_)
        and bool(np.isfinite(value))
    )


def _broadcast(value: Any, n: int) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim == 0:
        return np.full(n, value, dtype=object if isinstance(value, str) else None)
    if len(array) != n:
        raise ValueError(f"an intervention array has {len(array)} values for {n} samples")
    return array


def categorical(u: np.ndarray, probs: np.ndarray, values: Sequence) -> np.ndarray:
    """Inverse-CDF draw: row i picks ``values[k]`` with probability ``probs[i, k]`` given ``u[i]``."""
    probs = np.atleast_2d(probs)
    cdf = np.cumsum(probs / probs.sum(axis=1, keepdims=True), axis=1)
    index = (u[:, None] > cdf).sum(axis=1).clip(max=len(values) - 1)
    return np.asarray(values, dtype=object)[index]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of an (n, k) array."""
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def by_value(column: np.ndarray, table: Mapping[Any, Any]) -> np.ndarray:
    """Look up a per-category constant (scalar or vector) for every row, vectorised."""
    keys = list(table)
    codes = pd.Categorical(column, categories=keys).codes
    if (codes < 0).any():
        unknown = set(pd.unique(np.asarray(column)[codes < 0]))
        raise ValueError(f"values {unknown} have no entry; known: {keys}")
    return np.asarray([table[k] for k in keys], dtype=float)[codes]
