# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # SPARE: the best model for each group
#
# **Overview.** Most mitigation methods narrow the gap between groups inside one model, often by
# giving up some accuracy on the group that was served well. Xu et al. (2026) {cite}`xu2026spare`
# reframe fairness as the best achievable performance *for every group*: train one model per
# group and spend compute rather than accuracy. The hard part is which training data a group's
# model should learn from. SPARE weights every training image for every target group, with a
# weight in (0, 1] made of two distances to a decision boundary, each estimated by the smallest
# adversarial perturbation that changes a prediction (DeepFool {cite}`moosavi2016deepfool`):
#
# - **utility**: the distance to the task model's boundary; images near it are informative;
# - **similarity**: the distance into the target group's region of a *group classifier*; an image
#   already predicted to be in the target group brings no distribution shift (distance 0).
#
# With d = λ·d_utility + (1 − λ)·d_similarity the weight is w = exp(−d/τ). Group models may share
# their first stages to save compute.
#
# We test the paper's claims on our skin cohorts with two settings: light vs dark skin
# (Fitzpatrick I–III vs IV–VI, dark skin under-represented, as in Fitzpatrick17k) and young vs old
# patients (age ≥ 60, the causal model's own composition, as in ISIC 2019).
#
# **Prerequisites.** {doc}`02_bias` for the training loop, the fairness report and the
# baselines.

# %% tags=["parameters"]
mode = "quick"
seed = 0
device = "auto"
dark_fraction = 0.2
lam = 0.5
temperatures = [1.0, 4.0, 16.0]
share_stages = 0
mixing_ratios = [0.0, 0.5, 1.0, 2.0, 4.0]
backbones = []  # empty: the mode's (quick: small CNN; full: ResNet-18 and VGG-11)

# %%
from dataclasses import replace

import pandas as pd
from IPython.display import Markdown, display

from fairkit import amplification, plots, runs
from fairkit.fairness import with_intervals
from fairkit.mitigation import spare
from fairkit.models.classifier import BACKBONES

run = runs.start()
run.banner()
backbones = backbones or list(run.settings.backbones)
if unknown := set(backbones) - set(BACKBONES):
    raise ValueError(f"unknown backbones {sorted(unknown)}; choose from {BACKBONES}")
SETTINGS = {  # name: (audited attribute, bias injected into training)
    "skin type": ("skin_group", "under", dark_fraction),
    "age": ("age_group", "none", 0.0),
}
studies = {
    (name, backbone): spare.Study(
        amplification.Experiment(
            "skin", run.settings, seed, run.device, backbone=backbone, attribute=attribute
        ),
        kind,
        strength,
        lam=lam,
        share_stages=share_stages,
    )
    for name, (attribute, kind, strength) in SETTINGS.items()
    for backbone in backbones
}

# %% [markdown]
# ## Choosing the temperature
# τ sets how fast a weight falls with distance, in units of the median distance: a small τ
# keeps only the images near both boundaries, a large one weighs all images alike (τ → ∞: every
# group's model is ERM on all data). The paper tunes it; here each setting takes the τ whose
# group models reach the best worst-group AUROC on *validation* data. The test F1 at every τ
# shows what that choice gives; it plays no part in it.

# %%
tuning = []
for (name, backbone), study in studies.items():
    table, best = spare.temperature_sweep(study, temperatures)
    tuning.append(table.assign(setting=f"{name}, {backbone}", attribute=study.attribute))
    studies[(name, backbone)] = replace(study, temperature=best)
tuning = run.save_table(pd.concat(tuning, ignore_index=True), "temperature")
display(
    run.save_figure(
        plots.temperature_curves(tuning, title="SPARE's temperature: chosen on validation"),
        "temperature",
    )
)
main = studies[("skin type", backbones[0])]
Markdown(
    "Chosen: "
    + "; ".join(
        f"{setting} τ = {rows.loc[rows.chosen, 'temperature'].iloc[0]:g}"
        for setting, rows in tuning.groupby("setting", sort=False)
    )
    + "."
)

# %% [markdown]
# ## The weights
# For the skin-type setting, at the chosen τ: how much weight each group's model gives to its
# own images and to the other group's (totals and means). Similarity pulls the other group's
# images down; utility spreads the weights within each group. The smaller τ, the more the
# other group's images are pushed out.

# %%
groups = main.group_model()[1]
in_group = spare.in_group_matrix(main.cohorts["train"], main.attribute, groups)
weights = main.weights()
run.save_table(spare.effective_share(weights, in_group, groups), "weight_share")
display(
    run.save_figure(
        plots.weight_histograms(
            weights,
            in_group,
            groups,
            attribute=main.attribute,
            title="SPARE weights of the training images, per target group",
        ),
        "weights",
    )
)
display(spare.effective_share(weights, in_group, groups).round(3))
epoch = main.baseline("erm").seconds / run.settings.epochs
Markdown(
    f"DeepFool distances of the {len(in_group)} training images (task and group model) took "
    f"{main.seconds():.1f} s, the time of {main.seconds() / epoch:.1f} ERM training epochs."
)

# %% [markdown]
# ## SPARE against the baselines
# Every method trains the same backbone for the same number of epochs and is scored on the
# balanced test set with per-group precision, recall and F1 (95% bootstrap intervals). In-group
# training and SPARE have one model per group, each with its own validation threshold; the
# others use one model and one threshold, except fairlearn's `ThresholdOptimizer`, which sets
# group thresholds for equalized odds.

# %%
compared = {key: spare.compare(study) for key, study in studies.items()}
by_group = pd.concat(
    [
        g.assign(setting=f"{name}, {backbone}", attribute=studies[(name, backbone)].attribute)
        for (name, backbone), (g, _) in compared.items()
    ],
    ignore_index=True,
)
gaps = pd.concat(
    [d.assign(setting=f"{name}, {backbone}") for (name, backbone), (_, d) in compared.items()],
    ignore_index=True,
)
run.save_table(by_group, "methods_by_group")
run.save_table(gaps, "methods_gaps")
run.save_figure(
    plots.group_intervals(
        by_group, y="method", panels="setting", title="Per-group precision, recall and F1 (95% CI)"
    ),
    "methods",
)

# %% [markdown]
# The fairness gaps (fairlearn's definitions: equal opportunity |ΔTPR|, equalized odds
# max(|ΔTPR|, |ΔFPR|)), with training time:

# %%
gaps.assign(
    value=with_intervals(gaps),
    seconds=gaps["seconds"].round(1),
).pivot(index=["setting", "method", "seconds"], columns="metric", values="value")

# %% [markdown]
# ## Ablation
# Which part of the weight matters? On the skin-type setting: similarity only (λ = 0), utility
# only (λ = 1), both; probability margins instead of DeepFool distances ("confidence"); binary
# selection (the nearest images kept with weight 1, as many as SPARE's total weight) instead of
# continuous weights; and one shared weight for all out-of-group images ("group level").

# %%
ablation = spare.ablation(main).assign(attribute=main.attribute, setting="skin type")
run.save_table(ablation, "ablation")
run.save_figure(
    plots.group_intervals(
        ablation, y="variant", panels="setting", title="SPARE ablation: per-group scores (95% CI)"
    ),
    "ablation",
)

# %% [markdown]
# ## Sharing stages
# The group models share their first k stages (k = 0: independent models; all: a single model
# trained with both groups' weights). Fewer group-specific parameters cost less to train.

# %%
sharing = spare.sharing_curve(main)
run.save_table(sharing, "sharing")
run.save_figure(
    plots.sharing_curve(
        sharing, attribute=main.attribute, title="Per-group F1 and training cost vs. sharing"
    ),
    "sharing",
)

# %% [markdown]
# ## In-group and out-of-group data
# The paper observed that a group's model gains from some out-of-group images but can lose when
# they dominate, and that dark skin gained more from light-skin data than it lost to the shift.
# Each group's model here is trained on all of its own images plus a growing number of the other
# group's (capped by what exists) and scored on its own group.

# %%
mixing = spare.mixing_sweep(main, mixing_ratios)
run.save_table(mixing, "mixing")
run.save_figure(
    plots.mixing_curve(
        mixing, attribute=main.attribute, title="A group's own model vs. out-of-group data"
    ),
    "mixing",
)

# %% [markdown]
# ## What we found

# %%
metrics = run.save_table(pd.concat([by_group, gaps], ignore_index=True), "metrics")
display(Markdown("\n".join(spare.findings(by_group, ablation, sharing))))
Markdown(
    "Where a claim of the paper and our number disagree, the intervals above say whether this run "
    "can tell. Quick mode trains small networks for a few epochs on 2,000 images, so read "
    'directions, not decimals; `mode="full"` runs ResNet-18 and VGG-11 at paper scale.'
)

# %% [markdown]
# ## Try it
# - `python -m fairkit run notebooks/03_spare.py -p share_stages 2`: share the first two stages in
#   the main comparison.
# - `python -m fairkit run notebooks/03_spare.py -p lam 0.8 -p temperatures "[0.5, 16.0]"`: lean
#   on utility, and let validation choose between sharp and nearly flat weights.
# - `python -m fairkit run notebooks/03_spare.py -p dark_fraction 0.05`: does SPARE help more when
#   dark skin is rarer?
# - `python -m fairkit run notebooks/03_spare.py -p backbones "['resnet18', 'vgg11']"`: the
#   paper's backbones (narrow, at 32 px) on a CPU, in about ten minutes.
# - `python -m fairkit run notebooks/03_spare.py -p mode full` on a GPU: ResNet-18 and VGG-11 at
#   width 64 and 64 px on 40,000 images. Plan for 2-3 hours on one H100: 56 trainings of 30
#   epochs at the 4-5 s per epoch measured there (`benchmarks/results/deepfool_h100_*_full.txt`).

# %%
run.finish()
