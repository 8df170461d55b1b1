"""fairkit: the computing half of a reproducible study of fairness in medical-image AI."""

__version__ = "0.1.0"
