"""Cohorts: causal image generators, bias sampling, splits and datasheets."""

from fairkit.data.cohort import Cohort, as_tensor, concat

__all__ = ["Cohort", "as_tensor", "concat"]
