"""The Cohort: images (N, C, H, W) uint8 plus one metadata row per image."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from fairkit.io import atomic_dir, write_json


@dataclass
class Cohort:
    """Images and their metadata, the one data type every chapter passes around.

    Attributes:
        images: (N, C, H, W) uint8, in memory or memory-mapped.
        meta: one row per image with ``label``, ``diagnosis``, the protected attributes, ``site``,
            ``patient_id`` and, for generated cohorts, every variable and noise of the causal model.
        modality: ``skin``, ``cxr``, ``mri`` or a real dataset's name.
        classes: class names; ``label`` indexes into them.
    """

    images: np.ndarray
    meta: pd.DataFrame
    modality: str
    classes: tuple[str, ...]

    def __post_init__(self):
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise ValueError(
                f"images must be (N, C, H, W) uint8; got {self.images.shape} {self.images.dtype}"
            )
        if len(self.images) != len(self.meta):
            raise ValueError(f"{len(self.images)} images but {len(self.meta)} metadata rows")
        if "label" not in self.meta:
            raise ValueError("metadata needs a 'label' column")
        self.meta = self.meta.reset_index(drop=True)
        self._check_labels()
        self._check_patient_ids()

    def _check_labels(self) -> None:
        """Refuse a label that indexes no class (a -1 would silently read as the last class)."""
        labels = self.meta["label"]
        outside = ~labels.isin(range(len(self.classes)))
        if outside.any():
            raise ValueError(
                f"label must be 0 to {len(self.classes) - 1} (an index into {self.classes}); "
                f"found {sorted(set(labels[outside].tolist()), key=repr)[:5]} "
                f"in {outside.sum()} of {len(labels)} rows"
            )

    def _check_patient_ids(self) -> None:
        """Refuse rows without a patient id, which patient-level splits would group together."""
        if "patient_id" not in self.meta:
            return
        missing = self.meta["patient_id"].isna()
        if missing.any():
            raise ValueError(
                f"{missing.sum()} of {len(missing)} rows have no patient_id "
                f"(rows {np.flatnonzero(missing)[:5].tolist()}); every row needs one for "
                "patient-level splits"
            )

    def __len__(self) -> int:
        return len(self.meta)

    def __repr__(self) -> str:
        n, c, h, w = self.images.shape
        return f"Cohort({self.modality}, n={n}, {c}x{h}x{w}, classes={list(self.classes)})"

    @property
    def labels(self) -> np.ndarray:
        """Integer class labels."""
        return self.meta["label"].to_numpy()

    def subset(self, index) -> Cohort:
        """The cohort restricted to ``index`` (positions or a boolean mask)."""
        index = np.flatnonzero(index) if np.asarray(index).dtype == bool else np.asarray(index)
        return Cohort(
            np.asarray(self.images[index]), self.meta.iloc[index], self.modality, self.classes
        )

    def binarize(self, positive: list[str], *, names: tuple[str, str]) -> Cohort:
        """The same images with a binary task: ``positive`` diagnoses against all others."""
        if isinstance(positive, str):
            raise TypeError(f"positive must be a list of class names; got {positive!r}")
        unknown = set(positive) - set(self.classes)
        if unknown:
            raise ValueError(f"{sorted(unknown)} are not classes of this cohort: {self.classes}")
        hit = np.isin(np.asarray(self.classes)[self.labels], positive)
        return Cohort(
            self.images, self.meta.assign(label=hit.astype(np.int64)), self.modality, names
        )

    def relabel(self, column: str, classes: tuple[str, ...] | None = None) -> Cohort:
        """The same images labelled by a metadata column (e.g. skin group, for its classifier).

        ``classes`` fixes the label order (default: the column's sorted values).
        """
        if column not in self.meta:
            raise KeyError(f"{column!r} is not a metadata column")
        missing = self.meta[column].isna()
        if missing.any():
            raise ValueError(
                f"{column} has no value in {missing.sum()} of {len(missing)} rows "
                f"(rows {np.flatnonzero(missing)[:5].tolist()}); every row needs a label"
            )
        values = self.meta[column].astype(str)
        classes = tuple(sorted(values.unique())) if classes is None else tuple(classes)
        unknown = sorted(set(values) - set(classes))
        if unknown:
            raise ValueError(f"{column} values {unknown} are not among {list(classes)}")
        codes = values.map({c: k for k, c in enumerate(classes)}).to_numpy().astype(np.int64)
        return Cohort(self.images, self.meta.assign(label=codes), self.modality, classes)

    def examples(self, *, rows: str, cols: str) -> tuple[np.ndarray, list, list]:
        """One image per (row value, column value) cell, blank where a cell is empty.

        Returns:
            images shaped (rows, cols, C, H, W), the row values and the column values.
        """
        row_values = sorted(self.meta[rows].unique(), key=str)
        col_values = sorted(self.meta[cols].unique(), key=str)
        grid = np.zeros((len(row_values), len(col_values), *self.images.shape[1:]), np.uint8)
        for i, r in enumerate(row_values):
            for j, c in enumerate(col_values):
                hits = np.flatnonzero((self.meta[rows] == r) & (self.meta[cols] == c))
                if len(hits):
                    grid[i, j] = self.images[hits[0]]
        return grid, row_values, col_values

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``images.npy``, ``meta.parquet`` and ``cohort.json`` into the new folder ``path``.

        The three are written into a hidden sibling folder renamed to ``path`` at the end, so a
        cohort folder is complete or absent; one that exists already is refused, not overwritten.

        Raises:
            FileExistsError: ``path`` exists and is not an empty folder.
        """
        with atomic_dir(path) as tmp:
            np.save(tmp / "images.npy", np.asarray(self.images))
            self.meta.to_parquet(tmp / "meta.parquet", index=False)
            write_json(
                tmp / "cohort.json", {"modality": self.modality, "classes": list(self.classes)}
            )
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike, *, mmap: bool = True) -> Cohort:
        """Read a saved cohort; images stay on disk (memory-mapped) unless ``mmap`` is false."""
        path = Path(path)
        missing = [
            f for f in ("images.npy", "meta.parquet", "cohort.json") if not (path / f).exists()
        ]
        if missing:
            raise FileNotFoundError(f"{path} is not a saved cohort: missing {', '.join(missing)}")
        info = json.loads((path / "cohort.json").read_text())
        images = np.load(path / "images.npy", mmap_mode="r" if mmap else None)
        return cls(
            images, pd.read_parquet(path / "meta.parquet"), info["modality"], tuple(info["classes"])
        )


def concat(cohorts: list[Cohort]) -> Cohort:
    """Stack cohorts of the same modality and classes."""
    first = cohorts[0]
    if any(c.classes != first.classes or c.modality != first.modality for c in cohorts):
        raise ValueError("only cohorts of one modality and one class list can be joined")
    return Cohort(
        np.concatenate([np.asarray(c.images) for c in cohorts]),
        pd.concat([c.meta for c in cohorts], ignore_index=True),
        first.modality,
        first.classes,
    )


def as_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, C, H, W) images as float32 in [0, 1], the input range of every model."""
    return torch.from_numpy(np.array(images, dtype=np.uint8)).float().div_(255)
