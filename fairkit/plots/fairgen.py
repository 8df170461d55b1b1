"""Figures of fair generation: rater scores, preference accuracy, per-cell maps, downstream use.

The models compared are the unaligned diffusion model and its two preference-aligned versions
(DPO and the reference-free variant); they keep the same colour in every figure.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize

from fairkit.plots.cohorts import image_grid
from fairkit.plots.style import GROUP_COLORS, palette

# Fixed colours per generative model, so "dpo" looks the same in every figure.
MODEL_COLORS = {
    "unaligned": "#7F8C8D",
    "before": "#7F8C8D",  # the unaligned model, as named in preference-accuracy tables
    "dpo": "#2E86C1",
    "reference_free": "#D35400",
}
# Colour and marker per evaluation split.
SPLIT_STYLES = {"test": ("#1B4F72", "o"), "external": ("#B9770E", "s")}

INTERVAL = ["value", "lo", "hi"]


def require_columns(table: pd.DataFrame, columns, *, figure: str) -> None:
    """Refuse a table that lacks any of ``columns``, naming what is missing and what is there.

    Args:
        table: The figure's data.
        columns: The column names the figure reads.
        figure: The figure's name, for the message.

    Raises:
        ValueError: When a column is missing.
    """
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(
            f"{figure}: the table has no column {', '.join(map(repr, missing))}; expected "
            f"columns {', '.join(columns)}; found {', '.join(map(str, table.columns)) or 'none'}"
        )


def _label(value) -> str:
    """A model or method name as shown: ``reference_free`` reads "reference-free"."""
    return str(value).replace("_", "-")


def _model_colours(models) -> dict:
    """Colours for models: the fixed ones where known, else a colour-blind-safe set."""
    models = list(pd.unique(pd.Series(list(models))))
    extra = iter(sns.color_palette("colorblind", len(models))[::-1])
    return {m: MODEL_COLORS.get(m, next(extra)) for m in models}


def _attribute(rows: pd.DataFrame) -> str:
    """The attribute the rows' groups belong to.

    The ``attribute`` column where there is one, else the attribute whose fixed colours name
    all the groups (dark/light is skin_group), else "group".
    """
    if "attribute" in rows and len(rows):
        return str(rows["attribute"].iloc[0])
    groups = {str(g) for g in rows["group"].unique()}
    for attribute, colours in GROUP_COLORS.items():
        if groups <= set(colours):
            return attribute
    return "group"


def _points(ax, rows, *, at: str, levels, hue: str, colours: dict, horizontal=False, span=0.5):
    """Points with 95% interval bars at categorical positions ``levels``, one series per hue.

    Series are dodged side by side within ``span`` of a category's width; a level a series
    lacks is left out.
    """
    series = list(colours)
    step = span / (len(series) - 1) if len(series) > 1 else 0.0
    for k, level in enumerate(series):
        part = rows[rows[hue] == level].set_index(at).reindex(levels)
        pos = np.arange(len(levels)) + (k - (len(series) - 1) / 2) * step
        err = np.vstack([part["value"] - part["lo"], part["hi"] - part["value"]])
        err = {("xerr" if horizontal else "yerr"): np.nan_to_num(err.clip(min=0))}
        xy = (part["value"], pos) if horizontal else (pos, part["value"])
        marker = SPLIT_STYLES.get(level, (None, "o"))[1] if hue == "split" else "o"
        ax.errorbar(*xy, fmt=marker, color=colours[level], capsize=3, label=_label(level), **err)


def _legend(axes, *, on, title: str | None = None, labels=None) -> None:
    """One legend right of ``on`` holding every distinct label drawn on ``axes``."""
    seen: dict[str, object] = {}
    for ax in np.ravel(axes):
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    names = list(seen) if labels is None else [labels.get(k, k) for k in seen]
    on.legend(
        list(seen.values()),
        names,
        title=title,
        frameon=False,
        loc="upper left",
        bbox_to_anchor=(1, 1),
    )


def _model_panels(table: pd.DataFrame, *, title: str, ylabel: str, chance: bool):
    """Per modality a panel: its groups along x, one dodged series per model (95% CI)."""
    modalities = list(pd.unique(table["modality"]))
    colours = _model_colours(table["model"])
    most = max(table.groupby("modality")["group"].nunique())
    fig, axes = plt.subplots(
        1,
        len(modalities),
        figsize=((0.9 * most + 1.2) * len(modalities) + 2.6, 3.6),
        squeeze=False,
        sharey=True,
    )
    for ax, modality in zip(axes[0], modalities, strict=True):
        rows = table[table["modality"] == modality]
        groups = sorted(rows["group"].unique(), key=str)
        present = {m: c for m, c in colours.items() if (rows["model"] == m).any()}
        if chance:
            ax.axhline(0.5, color="0.35", lw=1, ls="--", label="chance", zorder=1)
        _points(ax, rows, at="group", levels=groups, hue="model", colours=present, span=0.45)
        ax.set_xticks(range(len(groups)), [str(g) for g in groups])
        ax.set_xlim(-0.6, len(groups) - 0.4)
        ax.grid(axis="x", visible=False)  # a line between a group's dodged points misleads
        ax.set(title=str(modality), xlabel=_attribute(rows).replace("_", " "))
    axes[0, 0].set(ylabel=ylabel, ylim=(-0.02, 1.02))
    _legend(axes, on=axes[0, -1], title="model")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


RATER_COLUMNS = ["modality", "model", "group", *INTERVAL]


def rater_scores(table: pd.DataFrame, *, title: str):
    """Mean rater score of each model's images per group, with 95% intervals.

    Args:
        table: Columns modality, model (e.g. "unaligned", "dpo", "reference_free"), group,
            value (mean rater score in [0, 1]), lo, hi; optionally attribute (else read from
            the group names).
        title: The figure's title.

    Returns:
        One panel per modality, its own groups along x, models as coloured series.
    """
    require_columns(table, RATER_COLUMNS, figure="rater_scores")
    return _model_panels(table, title=title, ylabel="rater score (0–1)", chance=False)


def preference_accuracy(table: pd.DataFrame, *, title: str):
    """Share of held-out preference pairs each model ranks as the rater did, per group (95% CI).

    Args:
        table: Columns modality, model ("before" i.e. unaligned, "dpo", "reference_free"),
            group, value (fraction of pairs ranked like the rater), lo, hi; optionally
            attribute.
        title: The figure's title.

    Returns:
        One panel per modality with a dashed line at chance (0.5).
    """
    require_columns(table, RATER_COLUMNS, figure="preference_accuracy")
    ylabel = "pairs ranked like the rater\n(held-out, 0–1)"
    return _model_panels(table, title=title, ylabel=ylabel, chance=True)


def cell_heatmaps(
    table: pd.DataFrame, *, value: str, title: str, cbar_label: str, cmap: str = "viridis"
):
    """A heat map per modality (rows) and model (columns) of ``value`` per group and finding.

    All maps share one colour scale; each uses its modality's own groups and findings. A cell
    without a value (too few images) shows "—".

    Args:
        table: Columns modality, model, group, finding and ``value``; optionally attribute.
        value: The column to show, e.g. "fid" or "group_agreement".
        title: The figure's title.
        cbar_label: The colour bar's label, with units.
        cmap: A matplotlib colour map.

    Returns:
        The grid of heat maps with one colour bar.
    """
    require_columns(table, ["modality", "model", "group", "finding", value], figure="cell_heatmaps")
    modalities = list(pd.unique(table["modality"]))
    models = list(pd.unique(table["model"]))
    values = pd.to_numeric(table[value], errors="coerce")
    low, high = (values.min(), values.max()) if values.notna().any() else (0.0, 1.0)
    n_groups = max(table.groupby("modality")["group"].nunique())
    n_findings = max(table.groupby("modality")["finding"].nunique())
    fig, axes = plt.subplots(
        len(modalities),
        len(models),
        figsize=(
            (0.75 * n_findings + 0.6) * len(models) + 2.4,
            (0.45 * n_groups + 1.5) * len(modalities) + 0.6,
        ),
        squeeze=False,
        layout="constrained",
    )
    for i, modality in enumerate(modalities):
        part = table[table["modality"] == modality]
        groups = sorted(part["group"].unique(), key=str)
        findings = list(pd.unique(part["finding"]))
        for j, model in enumerate(models):
            ax = axes[i, j]
            rows = part[part["model"] == model]
            grid = rows.pivot(index="group", columns="finding", values=value)
            grid = grid.reindex(index=groups, columns=findings).astype(float)
            sns.heatmap(
                grid,
                ax=ax,
                vmin=low,
                vmax=high,
                cmap=cmap,
                cbar=False,
                annot=True,
                fmt=".2f",
                annot_kws={"fontsize": 8},
                linewidths=0.5,
                linecolor="white",
            )
            for r, c in zip(*np.nonzero(grid.isna().to_numpy()), strict=True):
                ax.text(c + 0.5, r + 0.5, "—", ha="center", va="center", color="0.45")
            ax.grid(False)
            ax.set_xticks(np.arange(len(findings)) + 0.5, [str(f) for f in findings])
            ax.tick_params(axis="x", labelsize=8)
            plt.setp(ax.get_xticklabels(), rotation=35, ha="right", rotation_mode="anchor")
            ax.set_yticks(
                np.arange(len(groups)) + 0.5,
                [str(g) for g in groups] if j == 0 else [""] * len(groups),
                rotation=0,
            )
            ax.set_xlabel("")
            attribute = _attribute(part).replace("_", " ")
            ax.set_ylabel(f"{modality}\n{attribute}" if j == 0 else "")
            ax.set_title(_label(model) if i == 0 else "", fontsize=10)
    fig.colorbar(
        ScalarMappable(Normalize(low, high), cmap=cmap),
        ax=axes,
        label=cbar_label,
        shrink=min(1.0, 0.5 + 0.25 * len(modalities)),
    )
    fig.suptitle(title)
    return fig


def downstream_groups(table: pd.DataFrame, *, metric: str, title: str, ylabel: str | None = None):
    """A classifier's ``metric`` per group for each training method, per split and modality.

    Args:
        table: Columns modality, attribute (e.g. "skin_group"), split ("test", "external"),
            method ("real only", "unaligned", "dpo", ...), group, metric, value, lo, hi.
            Methods are shown in the table's order.
        metric: The metric to show (a value of the metric column).
        title: The figure's title.
        ylabel: The y label; default "<metric> (0–1)".

    Returns:
        Panels with rows = split, columns = modality; groups in their fixed colours.

    Raises:
        ValueError: When a column is missing or the table has no row for ``metric``.
    """
    columns = ["modality", "attribute", "split", "method", "group", "metric", *INTERVAL]
    require_columns(table, columns, figure="downstream_groups")
    table = table[table["metric"] == metric]
    if table.empty:
        raise ValueError(f"downstream_groups: no rows for metric {metric!r}")
    splits = list(pd.unique(table["split"]))
    modalities = list(pd.unique(table["modality"]))
    methods = list(pd.unique(table["method"]))
    fig, axes = plt.subplots(
        len(splits),
        len(modalities),
        figsize=((0.45 * len(methods) + 0.8) * len(modalities) + 2.4, 2.4 * len(splits) + 1.6),
        squeeze=False,
        sharex=True,
        sharey=True,
    )
    names = {}
    for j, modality in enumerate(modalities):
        part = table[table["modality"] == modality]
        attribute = str(part["attribute"].iloc[0])
        colours = palette(attribute, sorted(part["group"].unique(), key=str))
        names.update({str(g): f"{g} ({attribute.replace('_', ' ')})" for g in colours})
        for i, split in enumerate(splits):
            ax = axes[i, j]
            rows = part[part["split"] == split]
            _points(ax, rows, at="method", levels=methods, hue="group", colours=colours, span=0.4)
            ax.set_title(f"{modality} · {split}", fontsize=10)
    for ax in axes[-1]:
        ax.set_xticks(range(len(methods)), [_label(m) for m in methods])
        plt.setp(ax.get_xticklabels(), rotation=35, ha="right", rotation_mode="anchor")
        ax.set_xlim(-0.6, len(methods) - 0.4)
    for ax in axes.flat:
        ax.grid(axis="x", visible=False)  # a line between a method's dodged points misleads
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel or f"{metric.replace('_', ' ')} (0–1)")
    _legend(axes, on=axes[0, -1], title="group", labels=names)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def improvement_forest(
    table: pd.DataFrame,
    *,
    title: str,
    clip: tuple[float, float] = (-200.0, 150.0),
    xlabel: str = "improvement (%)",
):
    """Forest plot of percent improvements with 95% intervals: methods down, one panel per modality.

    Percent changes explode when the baseline gap is small, so the x axis is cut at ``clip``;
    an interval that runs past the cut ends in an arrow, and a value past it is drawn hollow at
    the edge with its number. A dotted line marks the paper's number where ``paper`` is given.

    Args:
        table: Columns modality, split, method, value (improvement in %), lo, hi; optionally
            paper (the paper's improvement for the modality, in %).
        title: The figure's title.
        clip: The widest x range shown, in %.
        xlabel: The x label, with units.

    Returns:
        The forest plot, splits as coloured markers.
    """
    require_columns(table, ["modality", "split", "method", *INTERVAL], figure="improvement_forest")
    modalities = list(pd.unique(table["modality"]))
    methods = list(pd.unique(table["method"]))
    splits = list(pd.unique(table["split"]))
    extra = iter(sns.color_palette("colorblind", len(splits)))
    colours = {s: SPLIT_STYLES.get(s, (None,))[0] or next(extra) for s in splits}
    fig, axes = plt.subplots(
        1,
        len(modalities),
        figsize=(3.4 * len(modalities) + 2.8, 0.45 * len(methods) * max(1, len(splits) / 2) + 1.8),
        squeeze=False,
        sharey=True,
    )
    clipped_any = False
    for ax, modality in zip(axes[0], modalities, strict=True):
        rows = table[table["modality"] == modality]
        paper = rows["paper"].dropna() if "paper" in rows else pd.Series(dtype=float)
        seen = np.concatenate([rows[INTERVAL].to_numpy(float).ravel(), [0.0], paper.to_numpy()])
        seen = seen[np.isfinite(seen)]
        pad = 0.06 * max(seen.max() - seen.min(), 10.0)
        left, right = max(clip[0], seen.min() - pad), min(clip[1], seen.max() + pad)
        ax.axvline(0, color="0.3", lw=1, zorder=1)
        if len(paper):
            ax.axvline(paper.iloc[0], color="0.2", lw=1.2, ls=":", label="paper", zorder=1)
        step = 0.36 / (len(splits) - 1) if len(splits) > 1 else 0.0
        for k, split in enumerate(splits):
            part = rows[rows["split"] == split].set_index("method").reindex(methods)
            pos = np.arange(len(methods)) + (k - (len(splits) - 1) / 2) * step
            clipped_any |= _forest_series(
                ax, part, pos=pos, limits=(left, right), colour=colours[split], split=split
            )
        _say_undefined(ax, rows, splits)
        ax.set_xlim(left, right)
        ax.set_yticks(range(len(methods)), [_label(m) for m in methods])
        ax.set_ylim(len(methods) - 0.5, -0.5)
        name = f"{modality} (paper {paper.iloc[0]:.1f}%)" if len(paper) else str(modality)
        ax.set(title=name, xlabel=xlabel)
    _legend(axes, on=axes[0, -1], title="split")
    if clipped_any:
        fig.text(
            0.99,
            0.01,
            f"axis cut at {clip[0]:.0f}% … {clip[1]:.0f}%: arrows mark intervals that run past it",
            ha="right",
            va="bottom",
            fontsize=8,
            color="0.35",
        )
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.04 if clipped_any else 0, 1, 1))
    return fig


def _say_undefined(ax, rows: pd.DataFrame, splits: list[str]) -> None:
    """Write in the panel which splits have no improvement at all (real only had no gap)."""
    empty = [s for s in splits if not np.isfinite(rows.loc[rows["split"] == s, "value"]).any()]
    if empty:
        ax.text(0.5, 0.02, f"no point on {' and '.join(map(_label, empty))}:\nreal only has no "
                "accuracy gap\nto reduce (its interval reaches 0)", transform=ax.transAxes,
                ha="center", va="bottom", fontsize=8, color="0.35")  # fmt: skip


def _forest_series(ax, part: pd.DataFrame, *, pos, limits, colour, split) -> bool:
    """Draw one split's intervals cut to ``limits``; say whether any ran past them."""
    left, right = limits
    value = part["value"].to_numpy(float)
    lo, hi = part["lo"].to_numpy(float), part["hi"].to_numpy(float)
    shown = value.clip(left, right)
    err = np.vstack([shown - lo.clip(left, right), hi.clip(left, right) - shown])
    marker = SPLIT_STYLES.get(split, (None, "o"))[1]
    inside = (value >= left) & (value <= right)
    ax.errorbar(shown, pos, xerr=np.nan_to_num(err.clip(min=0)), fmt="none", ecolor=colour,
                capsize=3)  # fmt: skip
    ax.plot(shown[inside], pos[inside], marker, color=colour, label=_label(split), zorder=3)
    outside = ~inside & np.isfinite(value)
    if outside.any():  # an empty unclipped line would stretch the axes' bounds to the origin
        ax.plot(shown[outside], pos[outside], marker, mfc="white", mec=colour, zorder=3,
                clip_on=False)  # fmt: skip
    for p, v in zip(pos[outside], value[outside], strict=True):
        ax.annotate(
            f"{v:.0f}%",
            (right if v > right else left, p),
            xytext=(-4 if v > right else 4, 5),
            textcoords="offset points",
            ha="right" if v > right else "left",
            fontsize=7,
            color=colour,
        )
    for past, edge, arrow in ((hi > right, right, ">"), (lo < left, left, "<")):
        if past.any():
            ax.plot(np.full(past.sum(), edge), pos[past], arrow, color=colour, ms=7, clip_on=False)
    return bool((hi > right).any() or (lo < left).any())


def alignment_search(table: pd.DataFrame, *, title: str):
    """Validation preference accuracy of each (β, learning rate, steps) candidate (95% CI).

    Args:
        table: Columns modality, variant ("dpo", "reference_free"), beta, lr, steps, value,
            lo, hi, unaligned (the unaligned model's accuracy on the same pairs), admissible
            and chosen (each a bool, or the share of seeds).
        title: The figure's title.

    Returns:
        A panel per (variant, modality), the steps on x, a line per (β, learning rate); a cross
        marks a candidate whose samples fail the realism probe (admissible in under half the
        seeds), a ring the chosen one, a dotted line the unaligned model, a dashed one chance.
    """
    require_columns(table, ["modality", "variant", "beta", "lr", "steps", *INTERVAL, "unaligned",
                            "admissible", "chosen"], figure="alignment_search")  # fmt: skip
    modalities, variants = list(pd.unique(table["modality"])), list(pd.unique(table["variant"]))
    fig, axes = plt.subplots(
        len(variants), len(modalities), figsize=(3.6 * len(modalities) + 2.4, 3.0 * len(variants)),
        squeeze=False, sharey=True,
    )  # fmt: skip
    betas, rates = sorted(table["beta"].unique()), sorted(table["lr"].unique())
    colours = dict(zip(betas, sns.color_palette("viridis", len(betas)), strict=True))
    styles = {lr: ["-", "--", ":", "-."][k % 4] for k, lr in enumerate(rates)}
    for i, variant in enumerate(variants):
        for j, modality in enumerate(modalities):
            rows = table[(table["variant"] == variant) & (table["modality"] == modality)]
            _search_panel(axes[i, j], rows, colours=colours, styles=styles)
            axes[i, j].set(title=f"{modality}: {_label(variant)}",
                           ylabel="validation pairs ranked\nlike the rater (0–1)" if j == 0 else "")  # fmt: skip
    _legend(axes, on=axes[0, -1], title="β, learning rate (ring: chosen)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _search_panel(ax, rows: pd.DataFrame, *, colours: dict, styles: dict) -> None:
    """One panel of ``alignment_search``: a line per (β, lr) over the steps, with its marks."""
    ax.axhline(0.5, color="0.35", lw=1, ls="--", label="chance", zorder=1)
    ax.axhline(rows["unaligned"].mean(), color="0.2", lw=1, ls=":", label="unaligned")
    for (beta, lr), line in rows.groupby(["beta", "lr"]):
        line, colour = line.sort_values("steps"), colours[beta]
        ax.errorbar(line["steps"], line["value"], yerr=[line["value"] - line["lo"],
                    line["hi"] - line["value"]], color=colour, ls=styles[lr], marker="o",
                    ms=4, capsize=2, label=f"β {beta:g}, lr {lr:g}")  # fmt: skip
        failed = line[line["admissible"].astype(float) < 0.5]
        if len(failed):
            ax.plot(failed["steps"], failed["value"], "x", ms=9, mew=2, color="0.1",
                    label="× samples fail realism")  # fmt: skip
        picked = line[line["chosen"].astype(float) >= 0.5]
        ax.plot(picked["steps"], picked["value"], "o", ms=11, mfc="none", mec=colour, mew=1.5)
    searched = sorted(rows["steps"].unique())
    ax.set_xticks(searched, [f"{n:g}" for n in searched])
    ax.set_xlabel("alignment steps")


def nearest_pairs(
    synthetic, nearest, *, distances, title: str, distance_label: str = "pixel L2 distance"
):
    """Synthetic images above their nearest training images, the distance under each pair.

    A check for memorisation: a tiny distance means the model copied a training image.

    Args:
        synthetic: Generated images, uint8 or float, shaped (k, C, H, W).
        nearest: Each one's nearest training image, the same shape.
        distances: The k distances between the pairs.
        title: The figure's title.
        distance_label: What the distances are, for the figure's foot.

    Returns:
        A 2-row image grid.
    """
    synthetic, nearest = np.asarray(synthetic), np.asarray(nearest)
    distances = np.asarray(distances, dtype=float).ravel()
    if synthetic.shape != nearest.shape or len(distances) != len(synthetic):
        raise ValueError(
            f"nearest_pairs: expected synthetic and nearest of one shape (k, C, H, W) and k "
            f"distances; found {synthetic.shape}, {nearest.shape} and {len(distances)} distances"
        )
    fig = image_grid(
        [synthetic, nearest], row_labels=["synthetic", "nearest\ntraining\nimage"], title=title
    )
    axes = np.array(fig.axes).reshape(2, -1)
    for ax, distance in zip(axes[1], distances, strict=False):
        ax.set_xlabel(f"{distance:.2f}", fontsize=9)
    renderer = fig.canvas.get_renderer()
    bottom = min(ax.get_tightbbox(renderer).y0 for ax in axes[1]) / fig.bbox.height
    fig.text(0.5, bottom - 0.02, f"{distance_label} under each pair", ha="center", va="top",
             fontsize=9)  # fmt: skip
    return fig
