"""Cohorts: causal image generators, bias sampling, splits and datasheets."""

from fairkit.data.cohort import Cohort, concat

__all__ = ["Cohort", "concat"]
