"""Empirical risk minimisation: one model, every training image weighted alike."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fairkit.methods.base import MethodPredictions, predictions_of
from fairkit.training import TrainConfig, fit

if TYPE_CHECKING:
    import numpy as np

    from fairkit.data import Cohort
    from fairkit.experiment import Scenario


@dataclass(frozen=True)
class ERM:
    """The baseline every mitigation is measured against.

    Subclasses change only how the loop trains (``training``): the sampler, the objective or
    the sample weights; or what it trains on (``training_cohort``).
    """

    name: str = "erm"

    def training(self, scenario: Scenario) -> tuple[TrainConfig, np.ndarray | None]:
        """The loop's config and per-sample weights (None: all equal) for this scenario."""
        return scenario.config(), None

    def training_cohort(self, scenario: Scenario) -> Cohort:
        """The images the model trains on: the scenario's training cohort."""
        return scenario.train

    def __call__(self, scenario: Scenario) -> MethodPredictions:
        """Train one model on ``training_cohort``; predict validation and test."""
        started = time.perf_counter()
        config, weights = self.training(scenario)
        model = fit(
            scenario.make_model(),
            self.training_cohort(scenario),
            config=config,
            val=scenario.val,
            sample_weight=weights,
        ).model
        return predictions_of(model, scenario, name=self.name, started=started)
