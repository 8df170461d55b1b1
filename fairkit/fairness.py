"""Group metrics over fairlearn's MetricFrame."""

from __future__ import annotations

from functools import partial

import pandas as pd
from fairlearn.metrics import MetricFrame, count
from sklearn.metrics import accuracy_score, f1_score, recall_score

METRICS = {
    "accuracy": accuracy_score,
    "macro_recall": partial(recall_score, average="macro", zero_division=0),
    "macro_f1": partial(f1_score, average="macro", zero_division=0),
    "count": count,
}


def group_metrics(predictions: pd.DataFrame, *, sensitive_features: str) -> MetricFrame:
    """Accuracy, macro recall and macro F1 per group of one attribute, as a fairlearn MetricFrame."""
    for column in ("y_true", "y_pred", sensitive_features):
        if column not in predictions:
            raise KeyError(f"predictions table has no column {column!r}")
    return MetricFrame(
        metrics=METRICS,
        y_true=predictions["y_true"],
        y_pred=predictions["y_pred"],
        sensitive_features=predictions[sensitive_features],
    )


def tidy(frame: MetricFrame) -> pd.DataFrame:
    """A MetricFrame's per-group values as a long table (group, metric, value)."""
    by_group = frame.by_group.drop(columns="count", errors="ignore")
    return by_group.reset_index().melt(
        id_vars=by_group.index.names, var_name="metric", value_name="value"
    )
