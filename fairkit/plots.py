"""The study's figures, one look for all chapters: each function takes data, returns a Figure."""

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


def image_grid(images, *, row_labels, col_labels=None, title: str | None = None, size=1.3):
    """Show a grid of images shaped (rows, cols, C, H, W) with row and column labels."""
    images = np.asarray(images)
    rows, cols = images.shape[:2]
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows), squeeze=False)
    shown = as_display(images.reshape(rows * cols, *images.shape[2:]))
    for k, ax in enumerate(axes.flat):
        ax.imshow(shown[k], interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    for j, label in enumerate(col_labels or []):
        axes[0, j].set_title(str(label), fontsize=9)
    for i, label in enumerate(row_labels):
        axes[i, 0].set_ylabel(str(label), fontsize=9, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title, y=1.0)
    fig.tight_layout()
    return fig


def group_bars(table: pd.DataFrame, *, x: str, y: str, hue: str, title: str, ylabel: str):
    """Bar chart of ``y`` per ``x`` coloured by group ``hue`` (fixed group colours)."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    sns.barplot(table, x=x, y=y, hue=hue, palette=palette(hue, table[hue]), ax=ax)
    ax.set(title=title, ylabel=ylabel, xlabel=x.replace("_", " "))
    ax.legend(title=hue.replace("_", " "), frameon=False, bbox_to_anchor=(1, 1), loc="upper left")
    fig.tight_layout()
    return fig
