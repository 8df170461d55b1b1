"""The study's figures, one look for all chapters: each function takes data, returns a Figure."""

from fairkit.plots.cohorts import causal_graph, group_bars, image_grid, prevalence_bars
from fairkit.plots.counterfactuals import counterfactual_columns, flip_bars, sampler_tradeoff
from fairkit.plots.fairgen import (
    alignment_search,
    cell_heatmaps,
    downstream_groups,
    improvement_forest,
    nearest_pairs,
    preference_accuracy,
    rater_scores,
    require_columns,
)
from fairkit.plots.metrics import (
    amplification_curves,
    claim_forest,
    control_margins,
    critical_difference,
    group_intervals,
    method_table,
    shortcut_bars,
)
from fairkit.plots.pipeline import monitor_timeline, stage_forest
from fairkit.plots.spare import mixing_curve, sharing_curve, temperature_curves, weight_histograms
from fairkit.plots.style import GROUP_COLORS, as_display, palette, set_theme

__all__ = [
    "GROUP_COLORS",  # fixed colours per attribute value, the same in every chapter
    "alignment_search",  # validation preference accuracy of each (beta, lr, steps) candidate
    "amplification_curves",  # per-group metric and a gap against injected bias strength
    "as_display",  # (N, C, H, W) images as (N, H, W, 3) floats for imshow
    "causal_graph",  # a causal model's graph, nodes coloured by kind
    "cell_heatmaps",  # a value per group and finding, for each modality and model
    "counterfactual_columns",  # factual and counterfactual images side by side
    "downstream_groups",  # a classifier metric per group for each training method
    "flip_bars",  # how often decisions flip under an intervention, per group
    "group_bars",  # one bar per group and setting
    "claim_forest",  # each claim's primary endpoint against its smallest effect, by verdict
    "control_margins",  # each testbed control's estimate against its gate, pass or fail
    "critical_difference",  # methods' mean ranks per selection rule, Nemenyi's bars
    "group_intervals",  # per-group values with 95% intervals, one panel per setting
    "image_grid",  # images in a labelled grid
    "improvement_forest",  # percent improvements with intervals, clipped axis, paper lines
    "method_table",  # methods against worst-group scores and gaps
    "mixing_curve",  # a group's own model against out-of-group data
    "monitor_timeline",  # a label-free performance estimate per group over time, with alarms
    "nearest_pairs",  # synthetic images over their nearest training images
    "palette",  # colours for an attribute's values
    "preference_accuracy",  # held-out preference pairs ranked like the rater, per group
    "prevalence_bars",  # the composition of a cohort by group
    "rater_scores",  # mean rater score of each model's images, per group
    "require_columns",  # refuse a figure's table that lacks a column, naming it
    "sampler_tradeoff",  # diffusion samplers: time against agreement
    "set_theme",  # the book's one seaborn theme
    "sharing_curve",  # per-group F1 and cost against shared stages
    "shortcut_bars",  # AUROC before and after removing an artifact
    "stage_forest",  # what each pipeline stage's intervention does to a gap, with intervals
    "temperature_curves",  # SPARE's temperature: validation choice and test F1
    "weight_histograms",  # SPARE weights per target group
]
