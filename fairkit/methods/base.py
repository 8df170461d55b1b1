"""What every method shares: the protocol, its predictions and per-group thresholds.

A method is a small frozen dataclass (its settings are its fields, so it can key a cache)
with a ``name`` and a call that turns one scenario of an experiment into predictions. The
experiment evaluates them, once, through ``fairness.report``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd

from fairkit.fairness import choose_threshold, positive_scores
from fairkit.training import predict

if TYPE_CHECKING:
    from fairkit.experiment import Scenario


@dataclass
class MethodPredictions:
    """Validation and test predictions of one method.

    ``decision`` in the test table holds decisions made by the method itself (post-processing,
    or group-specific thresholds); the report then uses them instead of one threshold.

    ``model`` is the trained network (None for in-group training, which has one per group);
    ``seconds`` the wall time of its training.
    """

    method: str
    val: pd.DataFrame
    test: pd.DataFrame
    model: object = None
    seconds: float = float("nan")


class Method(Protocol):
    """A mitigation: settings as fields, and a call from a scenario to predictions."""

    name: str

    def __call__(self, scenario: Scenario) -> MethodPredictions:
        """Train (or post-process) on the scenario's cohorts; predict validation and test."""
        ...


def predictions_of(model, scenario: Scenario, *, name: str, started: float) -> MethodPredictions:
    """Validation and test predictions of a trained model; ``started`` is its training start."""
    seconds = time.perf_counter() - started
    device = scenario.experiment.device
    return MethodPredictions(
        name,
        predict(model, scenario.val, device=device),
        predict(model, scenario.test, device=device),
        model,
        seconds,
    )


def group_threshold_decisions(
    val: pd.DataFrame, test: pd.DataFrame, *, attribute: str, positive: str
) -> np.ndarray:
    """Decisions on ``test`` with one threshold per group, each chosen on that group's val.

    For group-specific models (in-group training, SPARE), whose scores are not on one scale.
    """
    decision = np.zeros(len(test), dtype=int)
    scores = positive_scores(test, positive)
    for group, rows in val.groupby(attribute):
        threshold = choose_threshold(rows, positive=positive)
        hit = (test[attribute] == group).to_numpy()
        decision[hit] = scores[hit] >= threshold
    return decision
