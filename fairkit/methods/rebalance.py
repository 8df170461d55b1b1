"""Three ways to rebalance groups inside one model: resampling, reweighting, GroupDRO."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from fairkit.methods.erm import ERM

if TYPE_CHECKING:
    from fairkit.experiment import Scenario
    from fairkit.training import TrainConfig


def inverse_frequency_weights(groups: pd.Series) -> np.ndarray:
    """Weight each sample by 1 / (its group's size), scaled to mean 1."""
    sizes = groups.map(groups.value_counts())
    weights = 1 / sizes.to_numpy(dtype=float)
    return weights / weights.mean()


@dataclass(frozen=True)
class Resample(ERM):
    """Group-balanced sampling: every group drawn equally often in each epoch."""

    name: str = "resample"

    def training(self, scenario: Scenario) -> tuple[TrainConfig, None]:
        """Uniform sampling replaced by group-balanced sampling on the audited attribute."""
        config = self.config(scenario, sampling="group_balanced", group_column=scenario.attribute)
        return config, None


@dataclass(frozen=True)
class Reweight(ERM):
    """Inverse-frequency sample weights: each group carries the same total weight."""

    name: str = "reweight"

    def training(self, scenario: Scenario) -> tuple[TrainConfig, np.ndarray]:
        """The plain config, with weights 1 / (group size)."""
        return self.config(scenario), inverse_frequency_weights(
            scenario.train.meta[scenario.attribute]
        )


@dataclass(frozen=True)
class GroupDRO(ERM):
    """Online GroupDRO (Sagawa et al. 2020): the loss of the worst groups weighs most."""

    name: str = "groupdro"

    def training(self, scenario: Scenario) -> tuple[TrainConfig, None]:
        """The GroupDRO objective over the audited attribute's groups."""
        return self.config(scenario, objective="groupdro", group_column=scenario.attribute), None
