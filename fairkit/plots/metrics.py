"""Figures of group metrics: bias sweeps, method tables, shortcut test, intervals."""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from scikit_posthocs import critical_difference_diagram

from fairkit.plots.style import GAP_LABELS, errorbars, palette


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
        errorbars(
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
        errorbars(
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


def critical_difference(tests: dict, *, names: dict[str, str], title: str):
    """One critical-difference diagram per selection rule (scikit-posthocs), stacked.

    ``tests`` maps a rule to its ``bias.RankTest`` (``p_value``, ``mean_rank``, ``nemenyi``):
    methods on a rank axis (1 = best), joined by a bar where Nemenyi's test cannot tell them
    apart at the 5% level; each panel's title gives Friedman's p-value.
    """
    fig, axes = plt.subplots(len(tests), 1, figsize=(7.5, 1.9 * len(tests)), squeeze=False)
    methods = sorted({m for test in tests.values() for m in test.mean_rank.index})
    colours = dict(zip(methods, sns.color_palette("colorblind", len(methods)), strict=True))
    for ax, (rule, test) in zip(axes[:, 0], tests.items(), strict=True):
        critical_difference_diagram(test.mean_rank, test.nemenyi, ax=ax, color_palette=colours)
        ax.set_title(f"chosen by {names[rule]}: Friedman p = {test.p_value:.3g}", fontsize=10)
    axes[-1, 0].set_xlabel("mean rank (1 = best)")
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


def group_intervals(
    table: pd.DataFrame, *, y: str, panels: str, title: str, difference: str | None = None
):
    """Per-group values with 95% intervals: one panel per (``panels`` value, metric).

    ``y`` lists the compared things (methods, variants) down each panel; groups are coloured
    with their fixed colours. The table has columns attribute, group, metric, value, lo, hi.
    ``difference`` names what the values are differences of (e.g. "SPARE − method"): the axis
    says so and a line marks zero, the "no difference" a verdict is read against.
    """
    rows_of = list(pd.unique(table[panels]))
    metrics = list(pd.unique(table["metric"]))
    things_of = {panel: list(pd.unique(table.loc[table[panels] == panel, y])) for panel in rows_of}
    sizes = [len(things) for things in things_of.values()]
    fig, axes = plt.subplots(
        len(rows_of),
        len(metrics),
        figsize=(3.3 * len(metrics) + 1.5, 0.33 * sum(sizes) + 1.0 * len(rows_of) + 0.6),
        squeeze=False,
        sharex=True,
        gridspec_kw={"height_ratios": [n + 2 for n in sizes]},
    )
    for i, panel in enumerate(rows_of):
        part, things = table[table[panels] == panel], things_of[panel]
        attribute = part["attribute"].iloc[0]
        colours = palette(attribute, sorted(part["group"].unique()))
        dodge = 0.0 if y == "group" else 0.25  # one group per row needs no dodging
        for j, metric in enumerate(metrics):
            ax = axes[i, j]
            for k, (group, colour) in enumerate(colours.items()):
                rows = part[(part["metric"] == metric) & (part["group"] == group)]
                rows = rows.set_index(y).reindex(things)
                pos = np.arange(len(things)) + (k - (len(colours) - 1) / 2) * dodge
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
            if difference:
                ax.axvline(0, color="0.3", lw=1)
                ax.set(xlabel=f"{metric} difference\n({difference})")
            else:
                ax.set(xlabel=f"{metric} (0–1)")
            ax.set_title(str(panel) if j == 0 else "")
        axes[i, -1].legend(
            title=attribute.replace("_", " "),
            frameon=False,
            loc="upper left",
            bbox_to_anchor=(1, 1),
        )
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def claim_forest(summary: pd.DataFrame, *, title: str):
    """Each claim's primary endpoint against its smallest effect of interest, coloured by verdict.

    ``summary`` is ``claims.judge_all``'s table. The x axis is the endpoint minus its null, in
    units of the smallest effect of interest and signed so that + is what the claim predicts:
    the grey band (±1) is "no effect", and a claim of equality is reproduced inside it. An
    interval without bounds (a ratio whose denominator is not estimable) is drawn to the edge.
    """
    from fairkit.claims import VERDICTS

    sign = np.where(summary["predicts"] == "equal", 1, summary["direction"])
    scaled = {
        c: sign * (summary[c] - summary["null"]) / summary["sesoi"] for c in ("value", "lo", "hi")
    }
    lo, hi = np.fmin(scaled["lo"], scaled["hi"]), np.fmax(scaled["lo"], scaled["hi"])
    bounded = np.concatenate([lo[np.isfinite(lo)], hi[np.isfinite(hi)], [-3.0, 3.0]])
    edge = float(np.abs(bounded).max()) * 1.05
    lo, hi = np.where(np.isinf(lo), -edge, lo), np.where(np.isinf(hi), edge, hi)
    colours = dict(zip(VERDICTS, ("#1b7837", "#d6604d", "#2166ac", "0.5", "#7b3294", "#8c510a"),
                       strict=True))  # fmt: skip
    labels = [textwrap.fill(textwrap.shorten(c, 90), 48) for c in summary["claim"]]
    fig, ax = plt.subplots(figsize=(12, 0.62 * len(summary) + 1.8))
    ax.axvspan(-1, 1, color="0.9", zorder=0, label="± smallest effect of interest")
    ax.axvline(0, color="0.4", lw=0.8)
    y = np.arange(len(summary))
    value = scaled["value"].to_numpy()
    for verdict in VERDICTS:
        m = (summary["verdict"] == verdict).to_numpy()
        if m.any():
            ax.errorbar(value[m], y[m], xerr=np.vstack([value[m] - lo[m], hi[m] - value[m]]),
                        fmt="o", capsize=3, color=colours[verdict], label=verdict)  # fmt: skip
    for k in np.flatnonzero(~np.isfinite(value)):
        ax.text(0, y[k], "not measured", ha="center", va="center", fontsize=9, color="0.3")
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlim(-edge, edge)
    ax.set(xlabel="primary endpoint − null, in smallest effects of interest (+ = as the claim "
           "predicts)", title=title)  # fmt: skip
    ax.tick_params(axis="y", labelsize=9)
    ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1, 1), title="verdict")
    fig.tight_layout()
    return fig


def control_margins(gates: pd.DataFrame, *, title: str = "Can this testbed test the claims?"):
    """Each positive control's estimate minus its gate, with its 95% interval, pass or fail.

    ``gates`` is ``studies.testbed.gates``'s table. Left, the controls in AUROC and accuracy
    units; right, the oracle's recovery (a share of the loss, Fieller's interval, drawn to the
    edge where unbounded). Right of zero the estimate passes its threshold; a control of one
    seed has no interval and is drawn grey (not judged).
    """
    recovery = gates["control"].str.startswith("(b)").to_numpy()
    parts = [(gates[~recovery], "AUROC loss, balanced accuracy, hit rate"),
             (gates[recovery], "share of the minority's loss recovered")]  # fmt: skip
    heights = [max(len(p), 1) for p, _ in parts]
    fig, axes = plt.subplots(2, 1, figsize=(11, 0.38 * len(gates) + 2.6), squeeze=False,
                             gridspec_kw={"height_ratios": heights})  # fmt: skip
    for ax, (part, unit) in zip(axes[:, 0], parts, strict=True):
        _margins(ax, part, unit)
    axes[0, 0].set_title(title)
    axes[0, 0].legend(frameon=False, loc="upper left", bbox_to_anchor=(1, 1))
    fig.tight_layout()
    return fig


def _margins(ax, gates: pd.DataFrame, unit: str) -> None:
    """One panel of ``control_margins``: points, intervals and the gate line."""
    shift = {c: (gates[c] - gates["threshold"]).to_numpy(float) for c in ("value", "lo", "hi")}
    finite = np.concatenate([v[np.isfinite(v)] for v in shift.values()] + [np.array([-0.1, 0.1])])
    edge = float(np.abs(finite).max()) * 1.05
    value = shift["value"]
    lo, hi = (np.clip(shift[c], -edge, edge) for c in ("lo", "hi"))  # NaN stays NaN: no bar
    y = np.arange(len(gates))
    status = gates["passes"].map({True: "passes", False: "fails"}).fillna("not judged (one seed)")
    colours = {"passes": "#1b7837", "fails": "#d6604d", "not judged (one seed)": "0.55"}
    ax.axvline(0, color="0.3", lw=1, label="gate (threshold)")
    for name, colour in colours.items():
        m = (status == name).to_numpy()
        if m.any():
            err = np.vstack([value[m] - lo[m], hi[m] - value[m]])
            err = np.where(np.isfinite(err), err, 0).clip(min=0)
            ax.errorbar(value[m], y[m], xerr=err, fmt="o", capsize=3, color=colour, label=name)
    labels = [f"{m} · {c}" for m, c in zip(gates["modality"], gates["control"], strict=True)]
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlim(-edge, edge)
    ax.set_xlabel(f"estimate − threshold ({unit})")
    ax.tick_params(axis="y", labelsize=9)
