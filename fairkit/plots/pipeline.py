"""Figures of the pipeline chapter: what each stage's intervention does, and the monitor over time."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from fairkit.plots.fairgen import INTERVAL, SPLIT_STYLES, require_columns
from fairkit.plots.style import palette

STAGE_ORDER = ("pretraining", "adaptation", "mitigation", "post-processing")


def stage_forest(table: pd.DataFrame, *, metric: str, title: str, xlabel: str):
    """Paired differences of a gap per intervention (rows) and modality (panels), 95% intervals.

    Args:
        table: Comparison rows: columns setting ("<modality>, <split>"), a, b, stage, group,
            metric, value, lo, hi. Only group "all" rows of ``metric`` are shown.
        metric: The gap shown, e.g. "gap_accuracy".
        title: The figure's title.
        xlabel: The x label, with units; left of zero the first arm's gap is smaller.

    Returns:
        A forest plot, one panel per modality, splits as coloured markers.
    """
    require_columns(table, ["setting", "a", "b", "stage", "group", "metric", *INTERVAL],
                    figure="stage_forest")  # fmt: skip
    rows = table[(table["metric"] == metric) & (table["group"] == "all")].copy()
    if rows.empty:
        raise ValueError(f"stage_forest: no rows for metric {metric!r}")
    rows[["modality", "split"]] = rows["setting"].str.split(", ", n=1, expand=True)
    rows["intervention"] = rows["stage"] + ": " + rows["a"] + " vs " + rows["b"]
    order = {s: k for k, s in enumerate(STAGE_ORDER)}
    labels = list(
        rows.drop_duplicates("intervention")
        .assign(o=lambda t: t["stage"].map(order))
        .sort_values("o", kind="stable")["intervention"]
    )
    modalities = list(pd.unique(rows["modality"]))
    splits = list(pd.unique(rows["split"]))
    fig, axes = plt.subplots(1, len(modalities), squeeze=False, sharey=True,
                             figsize=(3.2 * len(modalities) + 4.2, 0.42 * len(labels) + 1.6))  # fmt: skip
    step = 0.3 / (len(splits) - 1) if len(splits) > 1 else 0.0
    for ax, modality in zip(axes[0], modalities, strict=True):
        ax.axvline(0, color="0.3", lw=1, zorder=1)
        for k, split in enumerate(splits):
            part = rows[(rows["modality"] == modality) & (rows["split"] == split)]
            part = part.set_index("intervention").reindex(labels)
            y = np.arange(len(labels)) + (k - (len(splits) - 1) / 2) * step
            colour, marker = SPLIT_STYLES.get(split, ("0.4", "o"))
            ax.errorbar(part["value"], y, xerr=[part["value"] - part["lo"], part["hi"] - part["value"]],
                        fmt=marker, color=colour, ms=5, capsize=2, lw=1.2, label=split)  # fmt: skip
        ax.set_title(modality)
        ax.set_xlabel(xlabel)
    axes[0, 0].set_yticks(np.arange(len(labels)), labels)
    axes[0, 0].invert_yaxis()
    axes[0, -1].legend(title="test split", loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def monitor_timeline(table: pd.DataFrame, *, attribute: str, onset: int | None, title: str,
                     ylabel: str):  # fmt: skip
    """The label-free estimate and the realised metric per batch and group, alarms marked.

    Args:
        table: ``Monitor.table`` rows: group, batch, estimated, realised, lower_threshold,
            upper_threshold, alarm and realised_alarm (bools); optionally a ``stream`` column
            (one panel each).
        attribute: The group attribute (fixes the groups' colours).
        onset: The batch at which the drift starts (a dotted line), None for none.
        title: The figure's title.
        ylabel: The metric's label, with its range.

    Returns:
        One panel per stream: lines for the estimate, dots for the realised value, the shaded
        band between the alarm thresholds, a cross on each alarm and a ring where the realised
        value leaves the band (what the labels would flag).
    """
    require_columns(table, ["group", "batch", "estimated", "realised", "lower_threshold",
                            "upper_threshold", "alarm", "realised_alarm"], figure="monitor_timeline")  # fmt: skip
    table = table if "stream" in table else table.assign(stream="stream")
    streams = list(pd.unique(table["stream"]))
    colours = palette(attribute, sorted(table["group"].unique(), key=str))
    fig, axes = plt.subplots(1, len(streams), squeeze=False, sharey=True,
                             figsize=(5.2 * len(streams) + 1.0, 3.6))  # fmt: skip
    for ax, stream in zip(axes[0], streams, strict=True):
        part = table[table["stream"] == stream]
        for group, rows in part.groupby("group", sort=True):
            c = colours[group]
            ax.fill_between(rows["batch"], rows["lower_threshold"], rows["upper_threshold"],
                            color=c, alpha=0.12, lw=0)  # fmt: skip
            ax.plot(rows["batch"], rows["estimated"], color=c, lw=1.6,
                    label=f"{group}: estimated (no labels)")  # fmt: skip
            ax.plot(rows["batch"], rows["realised"], "o", color=c, ms=3, alpha=0.7,
                    label=f"{group}: realised (true labels)")  # fmt: skip
            hit = rows[rows["alarm"].astype(bool)]
            ax.plot(hit["batch"], hit["estimated"], "x", color="#C0392B", ms=8, mew=2)
            seen = rows[rows["realised_alarm"].astype(bool)]
            ax.plot(seen["batch"], seen["realised"], "o", mfc="none", mec="#C0392B", ms=8, mew=1.2)
        if onset is not None and stream != "stationary":
            ax.axvline(onset, color="0.2", ls=":", lw=1.2)
        ax.set_title(stream)
        ax.set_xlabel("batch of the deployment stream (time)")
    axes[0, 0].set_ylabel(ylabel)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    handles += [
        plt.Line2D([], [], ls="", marker="x", color="#C0392B", mew=2),
        plt.Line2D([], [], ls="", marker="o", mfc="none", mec="#C0392B", ms=8),
    ]
    labels += ["alarm (estimate outside the band)", "what true labels would flag"]
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    sns.despine(fig)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
