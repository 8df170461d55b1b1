"""Figures of SPARE: sharing, temperature, mixing curves and weight histograms."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from fairkit.plots.style import errorbars, palette


def sharing_curve(table: pd.DataFrame, *, attribute: str, title: str):
    """Per-group F1 (95% CI) and training cost against the number of shared backbone stages."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    colours = palette(attribute, sorted(table["group"].unique()))
    errorbars(left, table, x="shared", hue="group", palette_=colours, dodge=0.05)
    total = int(table["of"].iloc[0])
    left.set(
        xlabel=f"stages shared by all groups (of {total})",
        ylabel="test F1 of the group's model (0–1)",
    )
    left.legend(title=attribute.replace("_", " "), frameon=False)
    cost = table.drop_duplicates("shared").sort_values("shared")
    right.plot(cost["shared"], cost["seconds"], marker="o", color="0.2", label="training time")
    right.set(xlabel=f"stages shared by all groups (of {total})", ylabel="training time (s)")
    twin = right.twinx()
    twin.plot(cost["shared"], cost["parameters"] / 1e6, marker="s", ls="--", color="#2E86C1")
    twin.set_ylabel("parameters (millions)", color="#2E86C1")
    twin.grid(False)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def temperature_curves(table: pd.DataFrame, *, title: str):
    """Per setting: validation AUROC that chooses SPARE's temperature, and the test F1 (95% CI).

    ``table`` has columns setting, attribute, group, temperature, val_auroc, value/lo/hi (test
    F1) and chosen; the chosen temperature is marked by a dotted line.
    """
    settings = list(dict.fromkeys(table["setting"]))
    fig, axes = plt.subplots(
        len(settings), 2, figsize=(10, 3.3 * len(settings)), squeeze=False, sharex=True
    )
    for (left, right), setting in zip(axes, settings, strict=True):
        rows = table[table["setting"] == setting]
        colours = palette(rows["attribute"].iloc[0], sorted(rows["group"].unique()))
        for group, part in rows.groupby("group"):
            part = part.sort_values("temperature")
            left.plot(part["temperature"], part["val_auroc"], marker="o", color=colours[group])
        errorbars(right, rows, x="temperature", hue="group", palette_=colours)
        chosen = rows.loc[rows["chosen"], "temperature"].iloc[0]
        ticks = sorted(rows["temperature"].unique())
        for ax in (left, right):
            ax.axvline(chosen, ls=":", color="0.3")
            ax.set_xscale("log", base=2)
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks], minor=False)
            ax.minorticks_off()
        left.set(ylabel="validation AUROC (0–1)", title=f"{setting}: chooses τ (dotted)")
        right.set(ylabel="test F1 (0–1)", title=f"{setting}: what the choice gives")
        right.legend(title=rows["attribute"].iloc[0].replace("_", " "), frameon=False)
    for ax in axes[-1]:
        ax.set_xlabel("temperature τ (in median distances)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def mixing_curve(table: pd.DataFrame, *, attribute: str, title: str):
    """Each group's own-model F1 (95% CI) against the out-of-group share of its training set."""
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    colours = palette(attribute, sorted(table["group"].unique()))
    errorbars(ax, table, x="ratio", hue="group", palette_=colours, dodge=0.01)
    ax.set(
        xlabel="out-of-group training images per in-group image",
        ylabel="test F1 of the group's model (0–1)",
        title=title,
    )
    ax.legend(title=f"target {attribute.replace('_', ' ')}", frameon=False)
    fig.tight_layout()
    return fig


def weight_histograms(
    weights: np.ndarray, in_group: np.ndarray, groups, *, attribute: str, title: str
):
    """Distribution of SPARE weights per target group, in-group against out-of-group samples."""
    fig, axes = plt.subplots(1, len(groups), figsize=(4.6 * len(groups), 3.4), squeeze=False)
    colours = palette(attribute, groups)
    for g, (ax, group) in enumerate(zip(axes[0], groups, strict=True)):
        frame = pd.DataFrame(
            {
                "weight": weights[:, g],
                "sample": np.where(in_group[:, g], f"{group} (in-group)", "other groups"),
            }
        )
        sns.histplot(
            frame,
            x="weight",
            hue="sample",
            bins=np.linspace(0, 1, 21),
            palette={f"{group} (in-group)": colours[group], "other groups": "0.6"},
            ax=ax,
            element="step",
            stat="count",
        )
        ax.set(title=f"model for {group}", xlabel="SPARE weight (0–1]", ylabel="training images")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
