"""Post-processing another method's scores, without retraining.

fairlearn's ThresholdOptimizer (equalized odds), or one validation-chosen threshold per group
(the fair control for group-specific models, which have one threshold per group).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from fairlearn.postprocessing import ThresholdOptimizer
from sklearn.base import BaseEstimator, ClassifierMixin

from fairkit import seeds
from fairkit.fairness import binary_labels, positive_scores
from fairkit.methods.base import Method, MethodPredictions, group_threshold_decisions

if TYPE_CHECKING:
    from fairkit.experiment import Scenario


@dataclass(frozen=True)
class Threshold:
    """Group-specific thresholds for equalized odds, fitted on ``base``'s validation scores."""

    name: str = "threshold"
    base: str | Method = "erm"  # a registered name, or a method (e.g. ERM at a tuned rate)

    def __call__(self, scenario: Scenario) -> MethodPredictions:
        """``base``'s predictions (trained once by the experiment) with post-processed decisions."""
        return postprocess(
            scenario.predictions(self.base),
            attribute=scenario.attribute,
            positive=scenario.positive,
            seed=scenario.experiment.seed,
            name=self.name,
        )


@dataclass(frozen=True)
class GroupThresholds:
    """``base``'s scores with one threshold per group, each chosen on that group's validation.

    Group-specific models (in-group, SPARE) get a threshold per group; a single-model baseline
    evaluated at one global threshold would mix the effect of the weights with that of the
    thresholds. This gives every baseline the same advantage.
    """

    base: str | Method = "erm"  # a registered name, or a method (e.g. a tuned one)

    @property
    def name(self) -> str:
        """E.g. ``erm`` (the comparison is between methods at per-group thresholds)."""
        return self.base if isinstance(self.base, str) else self.base.name

    def __call__(self, scenario: Scenario) -> MethodPredictions:
        """``base``'s predictions with per-group decisions on the test set."""
        base = scenario.predictions(self.base)
        decision = group_threshold_decisions(
            base.val, base.test, attribute=scenario.attribute, positive=scenario.positive
        )
        return replace(base, test=base.test.assign(decision=decision))


def postprocess(
    base: MethodPredictions, *, attribute: str, positive: str, seed: int, name: str = "threshold"
) -> MethodPredictions:
    """Post-process a method's scores with fairlearn's ThresholdOptimizer.

    Validation gets its decisions too: they show how well the constraint holds where it was
    fitted, beside the test set.
    """
    val, test = _threshold_optimizer(base.val, base.test, attribute, positive, seed)
    return replace(
        base, method=name, val=base.val.assign(decision=val), test=base.test.assign(decision=test)
    )


class _GivenScore(BaseEstimator, ClassifierMixin):
    """An 'estimator' whose input is already its score, so fairlearn can post-process scores."""

    def fit(self, X, y):
        self.classes_ = np.array([0, 1])
        return self

    def predict(self, X):
        return np.asarray(X)[:, 0]


def _threshold_optimizer(
    val: pd.DataFrame, test: pd.DataFrame, attribute: str, positive: str, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Validation and test decisions at group thresholds for equalized odds fitted on validation.

    fairlearn's thresholds are randomised between two cut-offs per group; each split draws its
    own stream.
    """
    y_val = binary_labels(val, positive)
    optimizer = ThresholdOptimizer(
        estimator=_GivenScore().fit(None, None),
        constraints="equalized_odds",
        objective="balanced_accuracy_score",
        prefit=True,
        predict_method="predict",
    )
    val_scores = positive_scores(val, positive).astype(np.float64)[:, None]
    test_scores = positive_scores(test, positive).astype(np.float64)[:, None]
    optimizer.fit(val_scores, y_val, sensitive_features=val[attribute].to_numpy())
    return tuple(
        np.asarray(
            optimizer.predict(
                scores,
                sensitive_features=table[attribute].to_numpy(),
                random_state=seeds.stream(seed, *stream),
            )
        ).astype(int)
        for table, scores, stream in (
            (val, val_scores, ("threshold", "validation")),
            (test, test_scores, ("threshold",)),
        )
    )
