"""One tuning protocol for every method: the same budget, its own grid, chosen on validation.

A method beats a baseline only if the baseline had the same chance. Every registered method
declares the hyperparameters a study searches (``search()``: field -> values, ``BUDGET``
trainings in all); a post-processing method (``base``) is tuned through its base. ``tune``
trains every candidate once (the experiment remembers each) and scores its *validation*
predictions under MEDFAIR's three model-selection rules (Zong et al., "MEDFAIR: benchmarking
fairness for medical imaging", ICLR 2023, Sec. 3.4): the best overall AUROC, the best
worst-group AUROC, and the smallest distance to the utopia point of utility and fairness. The
test set plays no part: the rules see ``MethodPredictions.val`` alone.
"""

from __future__ import annotations

import itertools
import numbers
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from fairkit.fairness import auroc, binary_labels, positive_scores

if TYPE_CHECKING:
    from fairkit.experiment import Scenario
    from fairkit.methods import Method

BUDGET = 3  # trainings every method gets: one per candidate of its own grid
RULES = ("overall", "worst_group", "distance")
RULE_NAMES = {
    "overall": "overall AUROC",
    "worst_group": "worst-group AUROC",
    "distance": "distance to optimum",
}


def search_grid(method: Method, grid: dict[str, tuple] | None = None) -> dict[str, tuple]:
    """``grid``, or the method's own ``search()``, checked against the method's fields.

    Raises a ValueError naming the method when it declares no search, when a grid names a field
    the method does not have (or its name), or when a grid is empty.
    """
    if grid is None:
        if not hasattr(method, "search"):
            raise ValueError(
                f"{method.name}: declares no search (a `search()` returning its "
                "hyperparameters and their values); every method is tuned alike"
            )
        grid = method.search()
    own = {f.name for f in fields(method)} - {"name"}
    if unknown := set(grid) - own:
        raise ValueError(f"{method.name}: no field {sorted(unknown)} to search; it has {own}")
    if not grid or any(len(values) == 0 for values in grid.values()):
        raise ValueError(f"{method.name}: the search grid {grid} is empty")
    return grid


def candidates(method: Method, grid: dict[str, tuple] | None = None) -> list[Method]:
    """``method`` at every point of its search grid (``search_grid``)."""
    grid = search_grid(method, grid)
    names = list(grid)
    return [
        replace(method, **dict(zip(names, point, strict=True)))
        for point in itertools.product(*(grid[n] for n in names))
    ]


def _aurocs(val: pd.DataFrame, attribute: str, positive: str) -> tuple[float, pd.Series]:
    """Overall AUROC and each group's, by group name (NaN for a one-class group)."""
    y, scores = binary_labels(val, positive), positive_scores(val, positive)
    rows_of = val.groupby(val[attribute].astype(str)).indices
    by_group = {g: auroc(y[rows], scores[rows]) for g, rows in sorted(rows_of.items())}
    return auroc(y, scores), pd.Series(by_group)


def group_aurocs(val: pd.DataFrame, *, attribute: str, positive: str) -> pd.Series:
    """Each group's AUROC on validation predictions, by group name; NaN for a one-class group."""
    return _aurocs(val, attribute, positive)[1]


def validation_scores(val: pd.DataFrame, *, attribute: str, positive: str) -> dict[str, float]:
    """Overall AUROC, worst-group AUROC and the AUROC gap (best - worst group) on validation.

    A group whose validation images hold one class has no AUROC; then neither has the worst
    group nor the gap (NaN), so the rules that read them cannot quietly judge another group.
    """
    overall, groups = _aurocs(val, attribute, positive)
    by_group = groups.to_numpy()
    return {
        "overall": overall,
        "worst_group": float(np.min(by_group)),
        "gap": float(np.max(by_group) - np.min(by_group)),
    }


def with_distance(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with each candidate's distance to the utopia point of its own candidates.

    The utopia point has the best overall AUROC and the smallest gap any candidate reached;
    both axes are AUROC, so the Euclidean distance weighs them alike (MEDFAIR's DTO).
    """
    return table.assign(
        distance=np.hypot(
            table["overall"].max() - table["overall"], table["gap"] - table["gap"].min()
        )
    )


def select(table: pd.DataFrame, rule: str) -> int:
    """The row of ``table`` (one per candidate, ``with_distance``) that ``rule`` keeps."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}; got {rule!r}")
    if table[rule].isna().all():
        raise ValueError(
            f"no candidate has a validation {RULE_NAMES[rule]} (a group's validation images "
            "may hold one class only)"
        )
    return int(table[rule].idxmin() if rule == "distance" else table[rule].idxmax())


@dataclass(frozen=True)
class Tuned:
    """A method tuned once: the candidate each rule keeps, and the table they were read from.

    ``table`` has one row per candidate: its ``candidate`` (e.g. ``lr=0.001``), the validation
    ``overall``, ``worst_group``, ``gap`` and ``distance``, and ``chosen_by`` (the rules that
    keep it, comma-separated; empty when none does). ``trainings``: the models the tuning
    needs (post-processing needs its base's, shared with the base's own tuning).
    """

    chosen: dict[str, Method]
    table: pd.DataFrame
    trainings: int


def _setting(method: Method, grid: dict) -> str:
    def shown(value):
        return f"{value:g}" if isinstance(value, numbers.Real) else str(value)

    return ", ".join(f"{name}={shown(getattr(method, name))}" for name in grid)


def tune(
    scenario: Scenario, method: Method, *, grid: dict[str, tuple] | None = None, rules=RULES
) -> Tuned:
    """Train every candidate of ``method``'s grid; keep the one each of ``rules`` chooses.

    A post-processing method (a ``base`` field) is its base tuned, then post-processed: it
    costs no training of its own. ``grid`` replaces the method's own search (a chapter's
    parameter); the budget test holds the registered searches to ``BUDGET``.
    """
    base = getattr(method, "base", None)
    if base is not None:
        from fairkit import methods  # the registry imports every method; tuning is below it

        base = methods.get(base) if isinstance(base, str) else base
        found = tune(scenario, base, grid=grid, rules=rules)
        chosen = {rule: replace(method, base=m) for rule, m in found.chosen.items()}
        return Tuned(chosen, found.table.assign(method=method.name), found.trainings)
    grid = search_grid(method, grid)
    points = candidates(method, grid)
    rows = []
    for candidate in points:
        val = scenario.predictions(candidate).val
        scores = validation_scores(val, attribute=scenario.attribute, positive=scenario.positive)
        rows.append({"method": method.name, "candidate": _setting(candidate, grid), **scores})
    table = with_distance(pd.DataFrame(rows))
    keep = {rule: select(table, rule) for rule in rules}
    table["chosen_by"] = [", ".join(r for r in rules if keep[r] == i) for i in range(len(table))]
    return Tuned({rule: points[i] for rule, i in keep.items()}, table, trainings=len(points))


def stacked(tuned: dict[str, Tuned], *, key: str = "method", **labels) -> pd.DataFrame:
    """The tuning tables of several methods, one under the other, their labels in ``key``."""
    return pd.concat(
        [found.table.assign(**{key: label}, **labels) for label, found in tuned.items()],
        ignore_index=True,
    )
