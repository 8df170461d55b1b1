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


def candidates(method: Method, grid: dict[str, tuple] | None = None) -> list[Method]:
    """``method`` at every point of its search grid (``grid`` overrides ``method.search()``).

    Raises a ValueError naming the method when it declares no search, when a grid names a
    field the method does not have, or when a grid is empty.
    """
    if grid is None:
        if not hasattr(method, "search"):
            raise ValueError(
                f"{method.name}: declares no search (a `search()` returning its "
                "hyperparameters and their values); every method is tuned alike"
            )
        grid = method.search()
    own = {f.name for f in fields(method)}
    if unknown := set(grid) - own:
        raise ValueError(f"{method.name}: no field {sorted(unknown)} to search; it has {own}")
    if not grid or any(len(values) == 0 for values in grid.values()):
        raise ValueError(f"{method.name}: the search grid {grid} is empty")
    names = list(grid)
    return [
        replace(method, **dict(zip(names, point, strict=True)))
        for point in itertools.product(*(grid[n] for n in names))
    ]


def validation_scores(val: pd.DataFrame, *, attribute: str, positive: str) -> dict[str, float]:
    """Overall AUROC, worst-group AUROC and the AUROC gap (best - worst group) on validation.

    A group whose validation images hold one class has no AUROC and is left out of both.
    """
    y, scores = binary_labels(val, positive), positive_scores(val, positive)
    by_group = [
        auroc(y[rows], scores[rows])
        for rows in val.groupby(val[attribute].astype(str)).indices.values()
    ]
    return {
        "overall": auroc(y, scores),
        "worst_group": float(np.nanmin(by_group)),
        "gap": float(np.nanmax(by_group) - np.nanmin(by_group)),
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
        raise ValueError(f"no candidate has a validation {RULE_NAMES[rule]}")
    return int(table[rule].idxmin() if rule == "distance" else table[rule].idxmax())


@dataclass
class Tuned:
    """A method tuned once: the candidate each rule keeps, and the table they were read from.

    ``table`` has one row per candidate: its ``candidate`` (e.g. ``lr=0.001``), the validation
    ``overall``, ``worst_group``, ``gap`` and ``distance``, and ``chosen_by`` (the rules that
    keep it, comma-separated; empty when none does).
    """

    chosen: dict[str, Method]
    table: pd.DataFrame

    @property
    def trainings(self) -> int:
        """Trainings the tuning cost (post-processing adds none)."""
        return len(self.table)


def _setting(method: Method, grid: dict) -> str:
    return ", ".join(f"{name}={getattr(method, name):g}" for name in grid)


def tune(scenario: Scenario, method: Method, *, grid: dict[str, tuple] | None = None) -> Tuned:
    """Train every candidate of ``method``'s grid; keep the one each rule chooses on validation.

    A post-processing method (a ``base`` field) is its base tuned, then post-processed: it
    costs no training of its own. ``grid`` replaces the method's own search (a chapter's
    parameter); the budget test holds the registered searches to ``BUDGET``.
    """
    base = getattr(method, "base", None)
    if base is not None:
        from fairkit import methods  # the registry imports every method; tuning is below it

        tuned = tune(scenario, methods.get(base) if isinstance(base, str) else base, grid=grid)
        chosen = {rule: replace(method, base=m) for rule, m in tuned.chosen.items()}
        return Tuned(chosen, tuned.table.assign(method=method.name))
    points = candidates(method, grid)
    grid = grid or method.search()
    rows = []
    for candidate in points:
        val = scenario.predictions(candidate).val
        scores = validation_scores(val, attribute=scenario.attribute, positive=scenario.positive)
        rows.append({"method": method.name, "candidate": _setting(candidate, grid), **scores})
    table = with_distance(pd.DataFrame(rows))
    keep = {rule: select(table, rule) for rule in RULES}
    table["chosen_by"] = [
        ", ".join(rule for rule in RULES if keep[rule] == i) for i in range(len(table))
    ]
    return Tuned({rule: points[i] for rule, i in keep.items()}, table)
