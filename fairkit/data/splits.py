"""Patient-level splits: no patient's images on both sides of a split."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import GroupShuffleSplit

from fairkit import seeds
from fairkit.data.cohort import Cohort


def patient_split(
    cohort: Cohort, *, val: float = 0.15, test: float = 0.15, seed: int = 0
) -> dict[str, Cohort]:
    """Split by ``patient_id`` (scikit-learn's GroupShuffleSplit) into train, val and test."""
    if "patient_id" not in cohort.meta:
        raise KeyError("patient_split needs a 'patient_id' column")
    if not (0 < val < 1 and 0 < test < 1 and val + test < 1):
        raise ValueError(f"val and test must be fractions summing below 1; got {val}, {test}")
    missing = cohort.meta["patient_id"].isna()
    if missing.any():  # as text, every missing id would be one patient "nan"
        raise ValueError(
            f"patient_id is missing in {missing.sum()} of {len(cohort)} rows (first at rows "
            f"{list(cohort.meta.index[missing][:5])}); a patient-level split needs every id"
        )
    groups = cohort.meta["patient_id"].astype(str).to_numpy()
    everything = np.arange(len(cohort))
    outer = GroupShuffleSplit(
        n_splits=1, test_size=test, random_state=seeds.stream(seed, "test split")
    )
    rest, test_idx = next(outer.split(everything, groups=groups))
    inner = GroupShuffleSplit(
        n_splits=1, test_size=val / (1 - test), random_state=seeds.stream(seed, "val split")
    )
    train_pos, val_pos = next(inner.split(rest, groups=groups[rest]))
    parts = {"train": rest[train_pos], "val": rest[val_pos], "test": test_idx}
    out = {}
    for name, index in parts.items():
        out[name] = cohort.subset(np.sort(index))
        out[name].meta["split"] = name
    return out
