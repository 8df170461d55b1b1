"""In-group training: one model per group, trained on that group's images only."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from fairkit.methods.base import MethodPredictions, group_threshold_decisions
from fairkit.methods.erm import LEARNING_RATES, check_lr, config_at
from fairkit.training import fit, predict

if TYPE_CHECKING:
    from fairkit.experiment import Scenario


@dataclass(frozen=True)
class InGroup:
    """Each patient scored by their own group's model, at that group's validation threshold."""

    name: str = "in_group"
    lr: float | None = None  # None: the experiment's; a study tunes it (``fairkit.tuning``)

    def __post_init__(self):
        check_lr(self)

    def search(self) -> dict[str, tuple]:
        """The learning rate, on ERM's grid: one rate for both groups' models."""
        return {"lr": LEARNING_RATES}

    def __call__(self, scenario: Scenario) -> MethodPredictions:
        """Train one model per group of the audited attribute; predict validation and test."""
        started, attribute = time.perf_counter(), scenario.attribute
        device = scenario.experiment.device
        vals, tests = [], []
        for group in sorted(scenario.train.meta[attribute].unique()):
            rows = {
                name: cohort.subset(cohort.meta[attribute] == group)
                for name, cohort in (
                    ("train", scenario.train),
                    ("val", scenario.val),
                    ("test", scenario.test),
                )
            }
            if min(len(np.unique(rows[k].labels)) for k in ("train", "val")) < 2:
                raise ValueError(
                    f"in-group training: {attribute}={group!r} lacks one class in train or val"
                )
            config = config_at(scenario, self.lr)
            model = fit(scenario.make_model(), rows["train"], config=config, val=rows["val"]).model
            vals.append(predict(model, rows["val"], device=device))
            tests.append(predict(model, rows["test"], device=device))
        val, test = pd.concat(vals, ignore_index=True), pd.concat(tests, ignore_index=True)
        decision = group_threshold_decisions(
            val, test, attribute=attribute, positive=scenario.positive
        )
        return MethodPredictions(
            self.name, val, test.assign(decision=decision), seconds=time.perf_counter() - started
        )
