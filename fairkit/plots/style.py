"""One look for every chapter: the theme, fixed group colours, error bars."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

# Fixed colours per attribute value, so "dark skin" looks the same in every chapter.
GROUP_COLORS = {
    "skin_group": {"light": "#E6B98A", "dark": "#6B4226"},
    "skin_type": dict(
        zip(["I", "II", "III", "IV", "V", "VI"], sns.color_palette("copper_r", 6), strict=True)
    ),
    "sex": {"F": "#C0392B", "M": "#2874A6"},
    "age_group": {"young": "#58D68D", "old": "#7D3C98"},
    "race": {"White": "#F5B041", "Black": "#5D6D7E", "Asian": "#48C9B0"},
    "field_strength": {"1.5T": "#85929E", "3T": "#1F618D"},
}


GAP_LABELS = {"equalized_odds": "equalized-odds gap", "gap_auroc": "AUROC gap (max − min)"}


def set_theme() -> None:
    """Apply the book's single seaborn theme."""
    sns.set_theme(context="notebook", style="whitegrid", font_scale=1.0)
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 150, "axes.titleweight": "bold"})


def palette(attribute: str, values) -> dict:
    """Colours for the values of ``attribute``: the fixed ones where known, else a seaborn set."""
    fixed = GROUP_COLORS.get(attribute, {})
    values = [v for v in pd.unique(pd.Series(list(values)))]
    extra = iter(sns.color_palette("tab10", len(values)))
    return {v: fixed.get(v, next(extra)) for v in values}


def as_display(images: np.ndarray) -> np.ndarray:
    """Turn (N, C, H, W) uint8 or float images into (N, H, W, 3) floats in [0, 1] for imshow."""
    images = np.asarray(images)
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    images = images.astype(np.float32) / scale
    if images.shape[1] == 1:
        images = np.repeat(images, 3, axis=1)
    return np.clip(images.transpose(0, 2, 3, 1), 0, 1)


def errorbars(ax, table: pd.DataFrame, *, x: str, hue: str, palette_: dict, dodge=0.0) -> None:
    """Points with 95% interval bars, one line per ``hue`` value."""
    levels = list(palette_)
    for k, (level, rows) in enumerate(table.groupby(hue, sort=False)):
        shift = (k - (len(levels) - 1) / 2) * dodge
        rows = rows.sort_values(x)
        err = np.vstack([rows["value"] - rows["lo"], rows["hi"] - rows["value"]]).clip(min=0)
        ax.errorbar(
            rows[x] + shift,
            rows["value"],
            yerr=err,
            marker="o",
            capsize=3,
            color=palette_[level],
            label=str(level),
        )
