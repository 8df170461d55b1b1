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


KIND_COLORS = {
    "patient": "#F5CBA7",
    "external": "#AED6F1",
    "disease": "#F1948A",
    "appearance": "#D5DBDB",
}


def causal_graph(edges, kinds: dict[str, str], *, title: str):
    """Draw a causal DAG in layers (roots left), nodes coloured by covariate kind."""
    depth = {n: 0 for n in kinds}
    for _ in kinds:
        for parent, child in edges:
            depth[child] = max(depth[child], depth[parent] + 1)
    layers: dict[int, list[str]] = {}
    for node in kinds:
        layers.setdefault(depth[node], []).append(node)
    pos = {
        node: (d, (len(nodes) - 1) / 2 - i)
        for d, nodes in layers.items()
        for i, node in enumerate(nodes)
    }
    height = max(len(nodes) for nodes in layers.values())
    fig, ax = plt.subplots(figsize=(2.3 * len(layers) + 1, 0.55 * height + 1.2))
    for parent, child in edges:
        ax.annotate(
            "",
            xy=pos[child],
            xytext=pos[parent],
            arrowprops={
                "arrowstyle": "-|>",
                "color": "0.45",
                "shrinkA": 24,
                "shrinkB": 24,
                "lw": 0.8,
                "connectionstyle": "arc3,rad=0.12",
            },
        )
    for node, (x, y) in pos.items():
        ax.text(
            x,
            y,
            node.replace("_", " "),
            ha="center",
            va="center",
            fontsize=8.5,
            bbox={"boxstyle": "round,pad=0.3", "fc": KIND_COLORS[kinds[node]], "ec": "0.3"},
        )
    for kind, colour in KIND_COLORS.items():
        ax.scatter([], [], marker="s", s=80, color=colour, label=kind, edgecolors="0.3")
    ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1, 1), title="covariate kind")
    ax.set_xlim(-0.6, max(layers) + 0.6)
    ax.set_ylim(-height / 2 - 0.2, height / 2 + 0.2)
    ax.axis("off")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def prevalence_bars(composition: pd.DataFrame, *, attribute: str, title: str):
    """Stacked share of each diagnosis per group of ``attribute`` (from a datasheet)."""
    rows = composition[composition["attribute"] == attribute].set_index("group")
    rates = rows[[c for c in rows if c.startswith("prev_")]].rename(columns=lambda c: c[5:])
    fig, ax = plt.subplots(figsize=(6, 0.5 * len(rates) + 1.4))
    rates.mul(100).plot.barh(stacked=True, ax=ax, colormap="Set2", width=0.7)
    labels = [f"{g} (n={n})" for g, n in rows["n"].items()]
    ax.set_yticks(range(len(labels)), labels)
    ax.set(
        xlabel="share of the group's images (%)", ylabel=attribute.replace("_", " "), title=title
    )
    ax.legend(title="diagnosis", frameon=False, loc="upper left", bbox_to_anchor=(1, 1))
    fig.tight_layout()
    return fig


def _errorbars(ax, table: pd.DataFrame, *, x: str, hue: str, palette_: dict, dodge=0.0) -> None:
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


def amplification_curves(
    groups: pd.DataFrame,
    gaps: pd.DataFrame,
    *,
    metric: str,
    xlabel: str,
    title: str,
    gap: str = "equalized_odds",
):
    """Per-group ``metric`` and a gap (default equalized odds) against bias strength, 95% CIs.

    One column of panels per modality: top the groups' metric, bottom the gap.
    """
    modalities = list(pd.unique(groups["modality"]))
    fig, axes = plt.subplots(
        2, len(modalities), figsize=(4.2 * len(modalities), 6.4), squeeze=False, sharex=True
    )
    for j, modality in enumerate(modalities):
        rows = groups[(groups["modality"] == modality) & (groups["metric"] == metric)]
        attribute = rows["attribute"].iloc[0]
        _errorbars(
            axes[0, j],
            rows,
            x="strength",
            hue="group",
            palette_=palette(attribute, rows["group"]),
            dodge=0.01,
        )
        axes[0, j].set(title=modality, ylabel=f"{metric} (0–1)")
        axes[0, j].legend(title=attribute.replace("_", " "), frameon=False)
        label = GAP_LABELS.get(gap, gap)
        rows = gaps[(gaps["modality"] == modality) & (gaps["metric"] == gap)]
        _errorbars(
            axes[1, j],
            rows.assign(series=label),
            x="strength",
            hue="series",
            palette_={label: "0.2"},
        )
        axes[1, j].set(xlabel=xlabel, ylabel=f"{label} (0–1)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def method_table(table: pd.DataFrame, *, title: str):
    """Baselines side by side: each metric's value and 95% interval per method, per modality."""
    metrics = list(pd.unique(table["metric"]))
    modalities = list(pd.unique(table["modality"]))
    fig, axes = plt.subplots(
        len(modalities),
        len(metrics),
        figsize=(3.2 * len(metrics), 2.6 * len(modalities)),
        squeeze=False,
        sharey=True,
    )
    methods = list(pd.unique(table["method"]))
    colours = dict(zip(methods, sns.color_palette("colorblind", len(methods)), strict=True))
    for i, modality in enumerate(modalities):
        for j, metric in enumerate(metrics):
            ax = axes[i, j]
            rows = (
                table[(table["modality"] == modality) & (table["metric"] == metric)]
                .set_index("method")
                .loc[methods]
            )
            err = np.vstack([rows["value"] - rows["lo"], rows["hi"] - rows["value"]]).clip(min=0)
            ax.errorbar(
                rows["value"], range(len(methods)), xerr=err, fmt="none", ecolor="0.4", capsize=3
            )
            ax.scatter(
                rows["value"], range(len(methods)), c=[colours[m] for m in methods], zorder=3
            )
            ax.set_yticks(range(len(methods)), methods)
            ax.set(xlabel=metric.replace("_", " ") + " (0–1)", title=modality if j == 0 else "")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def shortcut_bars(table: pd.DataFrame, *, title: str):
    """AUROC per group on images with the artifact tied to disease and with it removed."""
    fig, ax = plt.subplots(figsize=(8, 3.6))
    table = table.assign(panel=table["modality"] + ": " + table["group"].astype(str))
    tests = list(pd.unique(table["test"]))
    colours = dict(zip(tests, ["#D35400", "#2E86C1"], strict=True))
    panels = list(pd.unique(table["panel"]))
    for k, test in enumerate(tests):
        rows = table[table["test"] == test].set_index("panel").loc[panels]
        x = np.arange(len(panels)) + (k - 0.5) * 0.35
        err = np.vstack([rows["auroc"] - rows["lo"], rows["hi"] - rows["auroc"]]).clip(min=0)
        ax.bar(x, rows["auroc"], width=0.35, color=colours[test], label=test, yerr=err, capsize=3)
    ax.set_xticks(range(len(panels)), panels, rotation=20, ha="right")
    ax.set(ylabel="test AUROC (0–1)", ylim=(0.4, 1.0), title=title)
    ax.axhline(0.5, color="0.5", lw=0.8, ls=":")
    ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1, 1))
    fig.tight_layout()
    return fig


def group_intervals(table: pd.DataFrame, *, y: str, panels: str, title: str):
    """Per-group values with 95% intervals: one panel per (``panels`` value, metric).

    ``y`` lists the compared things (methods, variants) down each panel; groups are coloured
    with their fixed colours. The table has columns attribute, group, metric, value, lo, hi.
    """
    rows_of = list(pd.unique(table[panels]))
    metrics = list(pd.unique(table["metric"]))
    things = list(pd.unique(table[y]))
    fig, axes = plt.subplots(
        len(rows_of),
        len(metrics),
        figsize=(3.3 * len(metrics) + 1.5, 0.33 * len(things) * len(rows_of) + 1.6),
        squeeze=False,
        sharex=True,
    )
    for i, panel in enumerate(rows_of):
        part = table[table[panels] == panel]
        attribute = part["attribute"].iloc[0]
        colours = palette(attribute, sorted(part["group"].unique()))
        for j, metric in enumerate(metrics):
            ax = axes[i, j]
            for k, (group, colour) in enumerate(colours.items()):
                rows = part[(part["metric"] == metric) & (part["group"] == group)]
                rows = rows.set_index(y).reindex(things)
                pos = np.arange(len(things)) + (k - (len(colours) - 1) / 2) * 0.25
                err = np.vstack([rows["value"] - rows["lo"], rows["hi"] - rows["value"]])
                ax.errorbar(
                    rows["value"],
                    pos,
                    xerr=np.nan_to_num(err.clip(min=0)),
                    fmt="o",
                    color=colour,
                    capsize=2,
                    label=str(group),
                )
            ax.set_yticks(range(len(things)), things if j == 0 else [""] * len(things))
            ax.invert_yaxis()
            ax.set(xlabel=f"{metric} (0–1)", title=str(panel) if j == 0 else "")
        axes[i, -1].legend(
            title=attribute.replace("_", " "),
            frameon=False,
            loc="upper left",
            bbox_to_anchor=(1, 1),
        )
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def sharing_curve(table: pd.DataFrame, *, attribute: str, title: str):
    """Per-group F1 (95% CI) and training cost against the number of shared backbone stages."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    colours = palette(attribute, sorted(table["group"].unique()))
    _errorbars(left, table, x="shared", hue="group", palette_=colours, dodge=0.05)
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
        _errorbars(right, rows, x="temperature", hue="group", palette_=colours)
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
    _errorbars(ax, table, x="ratio", hue="group", palette_=colours, dodge=0.01)
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
    """Rate of changed decisions per group and counterfactual source, with 95% intervals."""
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    panels = list(pd.unique(table["intervention"] + " · " + table["source"]))
    groups = sorted(table[attribute].unique())
    colours = palette(attribute, groups)
    for k, group in enumerate(groups):
        rows = table[table[attribute] == group].assign(
            panel=lambda t: t["intervention"] + " · " + t["source"]
        )
        rows = rows.set_index("panel").reindex(panels)
        x = np.arange(len(panels)) + (k - (len(groups) - 1) / 2) * 0.35
        err = np.vstack([rows["flip_rate"] - rows["lo"], rows["hi"] - rows["flip_rate"]])
        ax.bar(x, rows["flip_rate"], width=0.35, color=colours[group], label=group,
               yerr=np.nan_to_num(err.clip(min=0)), capsize=3)  # fmt: skip
    ax.set_xticks(range(len(panels)), panels, rotation=15, ha="right")
    ax.set(ylabel="decisions changed (0–1)", title=title)
    ax.legend(title=attribute.replace("_", " "), frameon=False, loc="upper left",
              bbox_to_anchor=(1, 1))  # fmt: skip
    fig.tight_layout()
    return fig


def counterfactual_columns(pair_images: dict[str, np.ndarray], *, row_labels, title: str):
    """Columns of image versions side by side (original, exact, learned, ...), one row each."""
    stacked = np.stack(list(pair_images.values()), axis=1)
    return image_grid(stacked, row_labels=row_labels, col_labels=list(pair_images), title=title)
