"""Figures of counterfactuals: sampler trade-off, flip rates, image columns."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from fairkit.plots.cohorts import image_grid
from fairkit.plots.style import palette


def sampler_tradeoff(table: pd.DataFrame, *, title: str):
    """Time per image (log scale) against agreement with the requested condition, per sampler.

    Colour is the sampler, the number beside each point its step count.
    """
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    colours = dict(zip(pd.unique(table["sampler"]), sns.color_palette("colorblind"), strict=False))
    for k, (sampler, rows) in enumerate(table.groupby("sampler", sort=False)):
        ax.scatter(
            rows["seconds_per_image"] * 1000, rows["agreement"], color=colours[sampler], s=40,
            label=sampler,
        )  # fmt: skip
        for row in rows.itertuples():
            ax.annotate(
                str(row.steps),
                (row.seconds_per_image * 1000, row.agreement),
                textcoords="offset points",
                xytext=(4, 4 if k % 2 == 0 else -11),  # samplers alternate above and below
                fontsize=8,
                color=colours[sampler],
            )
    ax.set_xscale("log")
    ax.set(
        xlabel="time per image (ms, log scale)",
        ylabel="requested group found (0–1)",
        title=title,
    )
    ax.legend(title="sampler (steps)", frameon=False, loc="upper left", bbox_to_anchor=(1, 1))
    fig.tight_layout()
    return fig


def flip_bars(table: pd.DataFrame, *, attribute: str, title: str):
    """Rate of changed decisions per group, intervention, source and true-label change (95% CI).

    Where the intervention changed the true label (``true_label`` "changed") a flip is right;
    elsewhere it is counterfactually unfair. The bar label gives the number of images.
    """
    table = table.assign(
        panel=table["intervention"] + " · " + table["source"] + "\nlabel " + table["true_label"]
    )
    fig, ax = plt.subplots(figsize=(9, 3.9))
    panels = list(pd.unique(table["panel"]))
    groups = sorted(table[attribute].unique())
    colours = palette(attribute, groups)
    for k, group in enumerate(groups):
        rows = table[table[attribute] == group].set_index("panel").reindex(panels)
        x = np.arange(len(panels)) + (k - (len(groups) - 1) / 2) * 0.35
        err = np.vstack([rows["flip_rate"] - rows["lo"], rows["hi"] - rows["flip_rate"]])
        bars = ax.bar(x, rows["flip_rate"], width=0.35, color=colours[group], label=group,
                      yerr=np.nan_to_num(err.clip(min=0)), capsize=3)  # fmt: skip
        ax.bar_label(bars, labels=[f"n={n:.0f}" if n == n else "" for n in rows["n"]],
                     fontsize=7, padding=2)  # fmt: skip
    ax.set_xticks(range(len(panels)), panels, rotation=20, ha="right", fontsize=8)
    ax.set(ylabel="decisions changed (0–1)", title=title)
    ax.legend(title=attribute.replace("_", " "), frameon=False, loc="upper left",
              bbox_to_anchor=(1, 1))  # fmt: skip
    fig.tight_layout()
    return fig


def counterfactual_columns(pair_images: dict[str, np.ndarray], *, row_labels, title: str):
    """Columns of image versions side by side (original, exact, learned, ...), one row each."""
    stacked = np.stack(list(pair_images.values()), axis=1)
    return image_grid(stacked, row_labels=row_labels, col_labels=list(pair_images), title=title)
