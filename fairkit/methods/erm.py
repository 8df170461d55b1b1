"""Empirical risk minimisation: one model, every training image weighted alike."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fairkit.methods.base import MethodPredictions, predictions_of
from fairkit.training import TrainConfig, fit

LEARNING_RATES = (1e-3, 3e-3, 1e-2)  # whole networks: a log grid around the loop's 3e-3

if TYPE_CHECKING:
    import numpy as np
    from torch import nn

    from fairkit.data import Cohort
    from fairkit.experiment import Scenario


def check_lr(method) -> None:
    """Refuse a method's ``lr`` that is neither None nor a positive finite number."""
    lr = method.lr
    if lr is not None and not (isinstance(lr, float | int) and 0 < lr < float("inf")):
        raise ValueError(f"{method.name}: lr must be a positive number or None; got {lr!r}")


def config_at(scenario: Scenario, lr: float | None, **changes) -> TrainConfig:
    """The scenario's loop config with ``changes``, at ``lr`` if set (None: the loop's).

    The kept epoch follows the experiment's ``selection``: under ``worst_group`` the audited
    attribute's worst validation AUROC chooses it.
    """
    selection = scenario.experiment.selection
    by_group = {"selection": selection, "group_column": scenario.attribute}
    chosen = by_group if selection == "worst_group" else {}
    return scenario.config(**({} if lr is None else {"lr": lr}), **(chosen | changes))


@dataclass(frozen=True)
class ERM:
    """The baseline every mitigation is measured against.

    Subclasses change only how the loop trains (``training``): the sampler, the objective or
    the sample weights; what it trains on (``training_cohort``); or the network it starts
    from (``initial_model``).
    """

    name: str = "erm"
    lr: float | None = None  # None: the experiment's; a study tunes it per method on validation

    def __post_init__(self):
        check_lr(self)

    def search(self) -> dict[str, tuple]:
        """What a study tunes (``fairkit.tuning``): the learning rate, around the loop's 3e-3."""
        return {"lr": LEARNING_RATES}

    def config(self, scenario: Scenario, **changes) -> TrainConfig:
        """The scenario's loop config with ``changes``, at this method's learning rate if set."""
        return config_at(scenario, self.lr, **changes)

    def training(self, scenario: Scenario) -> tuple[TrainConfig, np.ndarray | None]:
        """The loop's config and per-sample weights (None: all equal) for this scenario."""
        return self.config(scenario), None

    def training_cohort(self, scenario: Scenario) -> Cohort:
        """The images the model trains on: the scenario's training cohort."""
        return scenario.train

    def initial_model(self, scenario: Scenario) -> nn.Module:
        """The network training starts from: a fresh one of the experiment's backbone."""
        return scenario.make_model()

    def __call__(self, scenario: Scenario) -> MethodPredictions:
        """Train one model on ``training_cohort``; predict validation and test."""
        started = time.perf_counter()
        config, weights = self.training(scenario)
        model = fit(
            self.initial_model(scenario),
            self.training_cohort(scenario),
            config=config,
            val=scenario.val,
            sample_weight=weights,
        ).model
        return predictions_of(model, scenario, name=self.name, started=started)
