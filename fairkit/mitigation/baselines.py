"""Baselines of the fairness literature, all through the one training loop.

ERM; group-balanced resampling; inverse-frequency reweighting; GroupDRO; in-group-only
training (one model per group, each patient scored by their group's model); and fairlearn's
``ThresholdOptimizer`` as post-processing of the ERM model's scores.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from fairlearn.postprocessing import ThresholdOptimizer
from sklearn.base import BaseEstimator, ClassifierMixin

from fairkit.data import Cohort
from fairkit.fairness import Report, choose_threshold, positive_scores, report
from fairkit.train import TrainConfig, fit, predict

METHODS = ("erm", "resample", "reweight", "groupdro", "in_group", "threshold")


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


def inverse_frequency_weights(groups: pd.Series) -> np.ndarray:
    """Weight each sample by 1 / (its group's size), scaled to mean 1."""
    sizes = groups.map(groups.value_counts())
    weights = 1 / sizes.to_numpy(dtype=float)
    return weights / weights.mean()


def run_method(
    method: str,
    *,
    make_model: Callable[[], object],
    train: Cohort,
    val: Cohort,
    test: Cohort,
    attribute: str,
    config: TrainConfig,
) -> MethodPredictions:
    """Train (and post-process) one baseline; return its validation and test predictions."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    start = time.perf_counter()
    device = config.device
    if method == "in_group":
        out = _in_group(make_model, train, val, test, attribute, config)
        return replace(out, seconds=time.perf_counter() - start)
    weights = None
    if method == "resample":
        config = replace(config, sampling="group_balanced", group_column=attribute)
    elif method == "groupdro":
        config = replace(config, objective="groupdro", group_column=attribute)
    elif method == "reweight":
        weights = inverse_frequency_weights(train.meta[attribute])
    model = fit(make_model(), train, config=config, val=val, sample_weight=weights).model
    seconds = time.perf_counter() - start
    out = MethodPredictions(
        method,
        predict(model, val, device=device),
        predict(model, test, device=device),
        model,
        seconds,
    )
    return (
        postprocess(out, attribute=attribute, positive=train.classes[1], seed=config.seed)
        if method == "threshold"
        else out
    )


def postprocess(
    erm: MethodPredictions, *, attribute: str, positive: str, seed: int
) -> MethodPredictions:
    """Post-process an ERM model's scores with fairlearn's ThresholdOptimizer (no retraining)."""
    test = erm.test.assign(
        decision=_threshold_optimizer(erm.val, erm.test, attribute, positive, seed)
    )
    return MethodPredictions("threshold", erm.val, test, erm.model, erm.seconds)


def _in_group(make_model, train, val, test, attribute, config) -> MethodPredictions:
    """One model per group, each with its own threshold chosen on its group's validation data."""
    vals, tests = [], []
    for group in sorted(train.meta[attribute].unique()):
        rows = {
            name: c.subset(c.meta[attribute] == group)
            for name, c in (("train", train), ("val", val), ("test", test))
        }
        if min(len(np.unique(rows[k].labels)) for k in ("train", "val")) < 2:
            raise ValueError(
                f"in-group training: {attribute}={group!r} lacks one class in train or val"
            )
        model = fit(make_model(), rows["train"], config=config, val=rows["val"]).model
        vals.append(predict(model, rows["val"], device=config.device))
        tests.append(predict(model, rows["test"], device=config.device))
    val_p, test_p = pd.concat(vals, ignore_index=True), pd.concat(tests, ignore_index=True)
    decision = group_threshold_decisions(
        val_p, test_p, attribute=attribute, positive=train.classes[1]
    )
    return MethodPredictions("in_group", val_p, test_p.assign(decision=decision))


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


class _GivenScore(BaseEstimator, ClassifierMixin):
    """An 'estimator' whose input is already its score, so fairlearn can post-process scores."""

    def fit(self, X, y):
        self.classes_ = np.array([0, 1])
        return self

    def predict(self, X):
        return np.asarray(X)[:, 0]


def _threshold_optimizer(
    val: pd.DataFrame, test: pd.DataFrame, attribute: str, positive: str, seed: int
) -> np.ndarray:
    """Group-specific thresholds for equalized odds, fitted on validation data (fairlearn)."""
    y_val = (val["y_true"].to_numpy() == 1).astype(int)
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
    decisions = optimizer.predict(
        test_scores, sensitive_features=test[attribute].to_numpy(), random_state=seed
    )
    return np.asarray(decisions).astype(int)


def evaluate(
    predictions: MethodPredictions, *, groups: list[str], positive: str, n_boot: int, seed: int
) -> Report:
    """The fairness report of a method at a threshold chosen on its validation predictions."""
    threshold = choose_threshold(predictions.val, positive=positive)
    return report(
        predictions.test,
        groups=groups,
        positive=positive,
        thresholds=threshold,
        n_boot=n_boot,
        seed=seed,
    )
