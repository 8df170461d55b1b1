import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from fairkit import plots
from fairkit.plots.style import GROUP_COLORS

GROUPS = {"skin": ("skin_group", ["light", "dark"]), "cxr": ("sex", ["M", "F"])}


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _models(models):
    rows = [
        dict(modality=m, model=model, group=g, value=0.6, lo=0.5, hi=0.7)
        for m, (_, groups) in GROUPS.items()
        for model in models
        for g in groups
    ]
    return pd.DataFrame(rows)


def _cells():
    findings = {"skin": ["melanoma", "nevus", "eczema"], "cxr": ["effusion", "no finding"]}
    rows = [
        dict(modality=m, model=model, group=g, finding=f, fid=10.0 * (k + 1))
        for m, (_, groups) in GROUPS.items()
        for k, model in enumerate(["unaligned", "dpo", "reference_free"])
        for g in groups
        for f in findings[m]
    ]
    table = pd.DataFrame(rows)
    table.loc[0, "fid"] = np.nan  # skin, unaligned, light, melanoma: too few images
    return table


METHODS = ["real only", "dpo", "groupdro"]  # not alphabetical: the table's order is kept


def _downstream():
    rows = [
        dict(
            modality=m,
            attribute=a,
            split=s,
            method=method,
            group=g,
            metric="auroc",
            value=0.8,
            lo=0.75,
            hi=0.85,
        )  # fmt: skip
        for m, (a, groups) in GROUPS.items()
        for s in ["test", "external"]
        for method in METHODS
        for g in groups
    ]
    return pd.DataFrame(rows)


def _forest():
    rows = [
        dict(modality=m, split=s, method=method, value=20.0, lo=-10.0, hi=50.0, paper=paper)
        for m, paper in [("skin", 95.9), ("cxr", 80.0)]
        for s in ["test", "external"]
        for method in METHODS
    ]
    table = pd.DataFrame(rows)
    table.loc[0, ["value", "lo", "hi"]] = [100.0, -40.0, 900.0]  # a tiny baseline gap
    return table


def _search():
    rows = [
        dict(modality=m, variant=v, beta=b, lr=lr, steps=n, value=0.6 + b / 1e5 + n / 1e4,
             lo=0.5 + b / 1e5, hi=0.7 + b / 1e5, unaligned=0.52, admissible=n < 300,
             chosen=(b == 8000.0 and lr == 1e-4 and n == 200))
        for m in ["skin", "cxr"]
        for v in ["dpo", "reference_free"]
        for b in [500.0, 2000.0, 8000.0]
        for lr in [3e-5, 1e-4]
        for n in [100, 200, 300]
    ]  # fmt: skip
    return pd.DataFrame(rows)


def _ticks(ax, axis="x"):
    return [t.get_text() for t in getattr(ax, f"get_{axis}ticklabels")()]


def _legend(fig):
    return [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().texts]


def test_rater_scores_draws_each_modalitys_own_groups_with_models_as_series():
    fig = plots.rater_scores(_models(["unaligned", "dpo", "reference_free"]), title="t")
    skin, cxr = fig.axes
    assert _ticks(skin) == ["dark", "light"] and _ticks(cxr) == ["F", "M"]
    assert (skin.get_xlabel(), cxr.get_xlabel()) == ("skin group", "sex")
    assert skin.get_ylabel() == "rater score (0–1)"
    assert _legend(fig) == ["unaligned", "dpo", "reference-free"]
    assert all(line.get_linestyle() != "--" for line in skin.lines)  # no chance line here


def test_preference_accuracy_marks_chance_in_every_panel():
    fig = plots.preference_accuracy(_models(["before", "dpo"]), title="t")
    assert len(fig.axes) == 2
    for ax in fig.axes:
        dashed = [line for line in ax.lines if line.get_linestyle() == "--"]
        assert [list(line.get_ydata()) for line in dashed] == [[0.5, 0.5]]
    assert _legend(fig) == ["chance", "before", "dpo"]


def test_cell_heatmaps_share_one_scale_and_show_missing_cells_as_a_dash():
    fig = plots.cell_heatmaps(_cells(), value="fid", title="t", cbar_label="FID")
    maps, colourbar = fig.axes[:6], fig.axes[6]
    assert len(fig.axes) == 2 * 3 + 1
    assert colourbar.get_ylabel() == "FID"
    assert {m.collections[0].get_clim() for m in maps} == {(10.0, 30.0)}
    assert _ticks(maps[0], "y") == ["dark", "light"] and _ticks(maps[3], "y") == ["F", "M"]
    assert _ticks(maps[0]) == ["melanoma", "nevus", "eczema"]
    assert _ticks(maps[3]) == ["effusion", "no finding"]
    texts = [t.get_text() for t in maps[0].texts]
    assert texts.count("—") == 1 and "10.00" in texts
    assert [ax.get_title() for ax in maps[:3]] == ["unaligned", "dpo", "reference-free"]


def test_downstream_groups_keeps_the_method_order_and_the_fixed_group_colours():
    fig = plots.downstream_groups(_downstream(), metric="auroc", title="t")
    axes = np.array(fig.axes).reshape(2, 2)
    assert [ax.get_title() for ax in axes.flat] == [
        "skin · test", "cxr · test", "skin · external", "cxr · external"
    ]  # fmt: skip
    assert _ticks(axes[1, 0]) == METHODS
    assert axes[0, 0].get_ylabel() == "auroc (0–1)"
    labels = _legend(fig)
    assert labels == ["dark (skin group)", "light (skin group)", "F (sex)", "M (sex)"]
    dark = axes[0, 0].lines[0].get_color()
    assert mcolors.same_color(dark, GROUP_COLORS["skin_group"]["dark"])


def test_downstream_groups_refuses_an_absent_metric():
    with pytest.raises(ValueError, match="no rows for metric 'f1'"):
        plots.downstream_groups(_downstream(), metric="f1", title="t")


def test_improvement_forest_clips_huge_intervals_and_marks_the_paper():
    fig = plots.improvement_forest(_forest(), title="t", clip=(-200, 150))
    skin, cxr = fig.axes
    left, right = skin.get_xlim()
    assert left >= -200 and right == 150  # the 900% interval is cut at the edge
    arrows = [line for line in skin.lines if line.get_marker() == ">"]
    assert len(arrows) == 1 and list(arrows[0].get_xdata()) == [150]
    assert any("axis cut" in t.get_text() for t in fig.texts)
    assert cxr.get_xlim()[1] < 150  # nothing to cut there: the axis fits the data
    dotted = [line for line in skin.lines if line.get_linestyle() == ":"]
    assert list(dotted[0].get_xdata()) == [95.9, 95.9]
    assert skin.get_title() == "skin (paper 95.9%)"
    assert _ticks(skin, "y") == METHODS
    assert _legend(fig) == ["paper", "test", "external"]


def test_improvement_forest_without_paper_or_clipping_adds_no_note():
    table = _forest().drop(columns="paper").iloc[1:]
    fig = plots.improvement_forest(table, title="t")
    assert not [t for t in fig.texts if "axis cut" in t.get_text()]
    assert fig.axes[0].get_title() == "skin"


def test_alignment_search_rings_the_chosen_candidate_and_crosses_the_unrealistic_ones():
    fig = plots.alignment_search(_search(), title="t")
    axes = np.array(fig.axes).reshape(2, 2)
    assert [ax.get_title() for ax in axes.ravel()] == [
        "skin: dpo", "cxr: dpo", "skin: reference-free", "cxr: reference-free"
    ]  # fmt: skip
    skin = axes[0, 0]
    assert _ticks(skin) == ["100", "200", "300"] and skin.get_xlabel() == "alignment steps"
    references = [line.get_label() for line in skin.lines[:2]]
    assert references == ["chance", "unaligned"] and skin.lines[1].get_ydata()[0] == pytest.approx(
        0.52
    )
    rings = [line for line in skin.lines if line.get_marker() == "o" and line.get_mfc() == "none"]
    chosen = [(tuple(r.get_xdata()), tuple(r.get_ydata())) for r in rings if len(r.get_xdata())]
    assert chosen == [((200,), (pytest.approx(0.7),))]
    crosses = [line for line in skin.lines if line.get_marker() == "x"]
    assert len(crosses) == 6 and all(list(c.get_xdata()) == [300] for c in crosses)
    assert "β 8000, lr 0.0001" in _legend(fig) and "× samples fail realism" in _legend(fig)


def test_nearest_pairs_puts_each_distance_under_its_pair():
    images = np.zeros((3, 1, 8, 8), dtype=np.uint8)
    fig = plots.nearest_pairs(images, images + 9, distances=[1.0, 2.5, 0.125], title="t")
    axes = np.array(fig.axes).reshape(2, 3)
    assert [ax.get_xlabel() for ax in axes[1]] == ["1.00", "2.50", "0.12"]
    assert axes[0, 0].get_ylabel() == "synthetic"
    assert axes[1, 0].images[0].get_array().max() == pytest.approx(9 / 255)


def test_nearest_pairs_refuses_pairs_that_do_not_match():
    images = np.zeros((3, 1, 8, 8), dtype=np.uint8)
    with pytest.raises(ValueError, match="2 distances"):
        plots.nearest_pairs(images, images, distances=[1.0, 2.0], title="t")


@pytest.mark.parametrize(
    ("figure", "table", "column", "kwargs"),
    [
        (plots.rater_scores, _models(["dpo"]), "model", {}),
        (plots.preference_accuracy, _models(["dpo"]), "hi", {}),
        (plots.cell_heatmaps, _cells(), "finding", {"value": "fid", "cbar_label": "FID"}),
        (plots.cell_heatmaps, _cells(), "fid", {"value": "fid", "cbar_label": "FID"}),
        (plots.downstream_groups, _downstream(), "attribute", {"metric": "auroc"}),
        (plots.improvement_forest, _forest(), "split", {}),
        (plots.alignment_search, _search(), "chosen", {}),
    ],
)
def test_figures_refuse_a_table_without_a_required_column(figure, table, column, kwargs):
    with pytest.raises(ValueError, match=f"{figure.__name__}: the table has no column '{column}'"):
        figure(table.drop(columns=column), title="t", **kwargs)


def test_improvement_forest_says_why_a_split_has_no_point():
    table = _forest()
    undefined = (table["modality"] == "cxr") & (table["split"] == "external")
    table.loc[undefined, ["value", "lo", "hi"]] = np.nan
    fig = plots.improvement_forest(table, title="t")
    skin, cxr = fig.axes
    assert not skin.texts
    (note,) = cxr.texts
    assert (
        note.get_text().startswith("no point on external:") and "no accuracy gap" in note.get_text()
    )
