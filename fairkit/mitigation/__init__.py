"""Bias mitigation: baselines (resampling, reweighting, GroupDRO, in-group, thresholds)."""
