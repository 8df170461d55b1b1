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
run_ablation = None  # None: in full mode only (5 variants x the τ grid); quick shows the sweep's
run_mixing = None  # None: in full mode only; quick shows the sweep's mean over seeds

# %% [raw] tags=["parameter-rules", "remove-cell"]
# dark_fraction: in (0, 1)
# lam: in [0, 1]
# temperatures: non-empty, each > 0
# share_stages: in [0, 6]
# mixing_ratios: non-empty, each >= 0
# backbones: distinct, each one of small_cnn, resnet18, vgg11
# run_ablation: None or bool
# run_mixing: None or bool

# %%
import pandas as pd
from IPython.display import Markdown, display

from fairkit import claims, plots, runs, tuning, verdicts
from fairkit.experiment import Experiment
from fairkit.methods import Spare
from fairkit.methods.spare import in_group_matrix
from fairkit.models import BACKBONES
from fairkit.studies import spare as study

run = runs.start()
run.banner()
backbones = backbones or list(run.settings.backbones)
run_ablation = mode == "full" if run_ablation is None else run_ablation
run_mixing = mode == "full" if run_mixing is None else run_mixing
if unknown := set(backbones) - set(BACKBONES):
    raise ValueError(f"unknown backbones {sorted(unknown)}; choose from {BACKBONES}")
SETTINGS = {  # name: (audited attribute, bias injected into training)
    "skin type": ("skin_group", "under", dark_fraction),
    "age": ("age_group", "none", 0.0),
}
scenarios = {
    (name, backbone): Experiment(
        "skin",
        run.settings,
        seed,
        run.device,
        backbone=backbone,
        attribute=attribute,
        n_val=run.settings.n_test,
        selection=study.RULE,  # single models keep their epoch by the rule that tunes them
    ).scenario(kind, strength)
    for name, (attribute, kind, strength) in SETTINGS.items()
    for backbone in backbones
}
study.check_sharing(scenarios, share_stages=share_stages)
spare_tuned = {}  # setting -> SPARE's tuning over the temperatures (``tuning.Tuned``)

# %% [markdown]
# ## Choosing the temperature
# τ sets how fast a weight falls with distance, in units of the median distance: a small τ
# keeps only the images near both boundaries, a large one weighs all images alike (τ → ∞: every
# group's model is ERM on all data). The paper tunes it; here each setting takes the τ whose
# group models reach the best worst-group AUROC on *validation* data. The validation set is as
# large as the test set, so that the choice does not rest on a hundred images of the smaller
# group. The test F1 at every τ shows what that choice gives; it plays no part in it.

# %%
temperature = []
for key, scenario in scenarios.items():
    base = Spare(lam=lam, share_stages=share_stages)
    table, spare_tuned[key] = study.temperature_sweep(scenario, base, temperatures)
    temperature.append(table.assign(setting=", ".join(key), attribute=scenario.attribute))
temperature = run.save_table(pd.concat(temperature, ignore_index=True), "temperature")
display(
    run.save_figure(
        plots.temperature_curves(temperature, title="SPARE's temperature: chosen on validation"),
        "temperature",
    )
)
main_key = ("skin type", backbones[0])
main, main_spare = scenarios[main_key], spare_tuned[main_key].chosen[study.RULE]
temperature[temperature["chosen"]][
    ["setting", "group", "temperature", "val_n", "val_auroc"]
].rename(columns={"temperature": "chosen τ", "val_n": "validation images"})

# %% [markdown]
# ## The weights
# For the skin-type setting, at the chosen τ: how much weight each group's model gives to its
# own images and to the other group's (totals and means). Similarity pulls the other group's
# images down; utility spreads the weights within each group. The smaller τ, the more the
# other group's images are pushed out.

# %%
groups = main_spare.group_model(main)[1]
in_group = in_group_matrix(main.train, main.attribute, groups)
weights = main_spare.weights(main)
run.save_table(study.effective_share(weights, in_group, groups), "weight_share")
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
display(study.effective_share(weights, in_group, groups).round(3))
epoch = main.predictions("erm").seconds / run.settings.epochs
seconds = main_spare.distances(main).seconds
Markdown(
    f"DeepFool distances of the {len(in_group)} training images (task and group model) took "
    f"{seconds:.1f} s, the time of {seconds / epoch:.1f} ERM training epochs."
)

# %% [markdown]
# ## Can this setting show SPARE's effect?
# Before SPARE is judged, two checks (the summary's gates for SPARE's claims on skin type):
# - **Positive control**: the under-representation must harm dark skin here, or no method can
#   show a gain for it. ERM (per-group thresholds) trained with dark skin at `dark_fraction`
#   minus ERM trained with both groups at half, each tuned on its own validation data, on the
#   same test patients.
# - **Manipulation check**: SPARE must weigh. Kish's effective sample size of each group
#   model's weights, (Σw)² / Σw², over the number of training images: 1 for flat weights,
#   which leave each group model ERM on all images, so that no ablation of the weights can
#   differ (the ablation below checks each variant's own). The mean weights on the group's
#   own and on the other group's images show how similarity separates the groups.

# %%
skin_type = [key for key in scenarios if key[0] == "skin type"]
checks = pd.concat(
    [study.premise_control(scenarios[key]).assign(setting=", ".join(key)) for key in skin_type]
    + [
        study.weight_check(scenarios[key], spare_tuned[key].chosen[study.RULE]).assign(
            setting=", ".join(key)
        )
        for key in skin_type
    ],
    ignore_index=True,
)
control = checks[checks["comparison"] == "positive control"]
weighed = checks[checks["comparison"] == "manipulation"]
display(
    control.assign(value=verdicts.with_intervals(control))
    .pivot(index=["setting", "group"], columns="metric", values="value")
    .rename_axis(columns="ERM − ERM trained balanced (95% CI)")
)
weighed.assign(share=weighed["a_value"] / weighed["b_value"]).set_index(["setting", "group"])[
    ["mean_in", "mean_out", "share"]
].rename(
    columns={
        "mean_in": "mean weight, own group",
        "mean_out": "mean weight, other group",
        "share": "effective sample / images",
    }
).round(3)

# %% [markdown]
# ## SPARE against the baselines
# Every method trains the same backbone for the same number of epochs and is scored on the
# balanced test set with per-group precision, recall and F1 (95% bootstrap intervals over test
# patients). SPARE and in-group training have one model per group, each kept at the epoch of
# its own group's best validation AUROC (SPARE's networks when they share no stage) and given
# its own threshold chosen on that group's validation images. So that a difference is the
# method's and not the thresholds', **every single-model baseline gets per-group validation
# thresholds too**, and keeps the epoch of its best *worst-group* validation AUROC (a single
# model has one epoch to keep; its worst group's is what each group model's own choice
# secures; SPARE's task model, the ERM whose boundary gives the utility distances, is kept
# so too). ERM at one global threshold stays as a reference, and fairlearn's
# `ThresholdOptimizer` sets its own group thresholds for equalized odds.
#
# **Every baseline is tuned as SPARE is**: the same budget of trainings over its own
# hyperparameter (the learning rate for ERM, resampling and in-group models, the reweighting
# exponent, GroupDRO's step size η; SPARE's is τ), kept by the same rule, SPARE's own: the best
# worst-group AUROC on validation data (`fairkit.tuning`). The tuning table:

# %%
compared = {key: study.compare(sc, spare_tuned[key]) for key, sc in scenarios.items()}
if len(temperatures) != tuning.BUDGET:
    print(f"SPARE searched {len(temperatures)} temperatures, each control {tuning.BUDGET} "
          "settings: the two were not tuned at the same budget.")  # fmt: skip
tuning_table = run.save_table(
    pd.concat(
        [c.tuning.assign(setting=", ".join(key)) for key, (c, _) in compared.items()],
        ignore_index=True,
    ),
    "tuning",
)
tuning_table.set_index(["setting", "method", "candidate"])[
    ["overall", "worst_group", "gap", "chosen_by"]
].round(3)

# %%
by_group = pd.concat(
    [
        c.by_group.assign(setting=", ".join(key), attribute=scenarios[key].attribute)
        for key, (c, _) in compared.items()
    ],
    ignore_index=True,
)
gaps = pd.concat(
    [c.gaps.assign(setting=", ".join(key)) for key, (c, _) in compared.items()],
    ignore_index=True,
)
method_differences = pd.concat(
    [
        d.assign(setting=", ".join(key), attribute=scenarios[key].attribute)
        for key, (_, d) in compared.items()
    ],
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
# max(|ΔTPR|, |ΔFPR|)), with training time. A gap's interval is centred on its estimate (the
# max − min over groups is larger in resamples than in the sample, so plain percentiles can
# miss it):

# %%
gaps.assign(
    value=verdicts.with_intervals(gaps),
    seconds=gaps["seconds"].round(1),
).pivot(index=["setting", "method", "seconds"], columns="metric", values="value")

# %% [markdown]
# What a comparison rests on is the **paired difference**: SPARE minus each method on the same
# test patients, with the same bootstrap replicates for both, so the test set's own noise
# cancels. Zero inside the interval means no detectable difference in this run:

# %%
run.save_figure(
    plots.group_intervals(
        method_differences[method_differences["metric"].isin(study.PER_GROUP_METRICS)],
        y="b",
        panels="setting",
        title="SPARE minus each method, this run (paired 95% CI)",
        difference="SPARE − method",
    ),
    "method_differences",
)

# %% [markdown]
# ## Ablation
# Which part of the weight matters? On the skin-type setting: similarity only (λ = 0), utility
# only (λ = 1), both; probability margins instead of DeepFool distances ("confidence"); binary
# selection (the nearest images kept with weight 1, as many as SPARE's total weight) instead of
# continuous weights; and one shared weight for all out-of-group images ("group level"). **Each
# variant chooses its own τ on validation data**, as full SPARE does: a variant held at full
# SPARE's τ would be judged at a setting tuned for another method. That is five variants times
# the τ grid, so a quick run leaves the ablation to the sweep in `results/` (which runs every
# section; `-p run_ablation True` runs it here too) and shows the sweep's chosen τ below.

# %%
if run_ablation:
    variants, variant_tuning, ablation_differences = study.ablation(main, main_spare, temperatures)
    ablation = variants.by_group.assign(attribute=main.attribute, setting="skin type")
    run.save_table(ablation, "ablation")
    run.save_table(variant_tuning, "ablation_temperature")
    display(
        run.save_figure(
            plots.group_intervals(
                ablation,
                y="variant",
                panels="setting",
                title="SPARE ablation: per-group scores (95% CI)",
            ),
            "ablation",
        )
    )
    variant_tuning = variant_tuning.assign(seed=seed)
else:
    variant_tuning = run.sweep_table("ablation_temperature")
if variant_tuning is not None:
    picks = variant_tuning[variant_tuning["chosen"]].drop_duplicates(["variant", "seed"])
    display(
        picks.groupby("variant")["temperature"].value_counts().unstack(fill_value=0)
        .rename_axis(columns="chosen τ (seeds)")
    )  # fmt: skip

# %% [markdown]
# ## Sharing stages
# The group models share their first k stages (k = 0: independent models; all: a single model
# trained with both groups' weights). Fewer group-specific parameters cost less to train.
# Networks that share a stage cannot each keep their own best epoch, so every point of this
# curve, k = 0 included, keeps its networks at the best worst-group validation epoch.

# %%
sharing, sharing_differences = study.sharing_curve(main, main_spare)
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
# group's (capped by what exists) and scored on its own group. One curve costs a training run
# per point; in quick mode this section shows the sweep's curve, the mean over its seeds with a
# seed-level 95% t interval (`-p run_mixing True` runs it here, with bootstrap intervals).

# %%
if run_mixing:
    mixing = run.save_table(study.mixing_sweep(main, mixing_ratios), "mixing")
else:
    swept = run.sweep_table("mixing")
    mixing = None if swept is None else study.pooled_mixing(swept)
if mixing is not None:
    display(
        run.save_figure(
            plots.mixing_curve(
                mixing, attribute=main.attribute, title="A group's own model vs. out-of-group data"
            ),
            "mixing",
        )
    )

# %% [markdown]
# ## What we found
# Every comparison of this run, as paired differences (saved as `comparisons.csv`; a sweep
# pools this table over seeds):

# %%
run.save_table(pd.concat([by_group, gaps], ignore_index=True), "metrics")
comparisons = run.save_table(
    pd.concat(
        [
            method_differences,
            checks,
            ablation_differences.assign(setting="skin type") if run_ablation else None,
            sharing_differences.assign(setting="skin type"),
        ],
        ignore_index=True,
    ),
    "comparisons",
)
KEYS = verdicts.COMPARISON_KEYS

# %% [markdown]
# One run cannot carry a verdict: training noise moves these differences more than the test
# set's bootstrap shows. The verdicts below pool the seeds of the sweep kept in `results/`
# (`make study`), run with this chapter's parameters: the mean paired difference over seeds
# with its seed-level 95% t interval, and the mean per-seed bootstrap interval beside it.
# **better** / **worse** only when the seed-level interval excludes zero, with at least
# five seeds; otherwise *no detectable difference* (or *inconclusive* under five seeds).

# %%
sweep = run.sweep_table("comparisons")
if sweep is not None:
    pooled = verdicts.beside_run(verdicts.pool_seeds(sweep, by=KEYS), comparisons)
    run.save_table(pooled, "verdicts")
    shown = pooled.assign(
        pooled=verdicts.with_intervals(pooled),
        test_noise=[f"[{r.boot_lo:.3f}, {r.boot_hi:.3f}]" for r in pooled.itertuples()],
    )
    display(Markdown(
        f"**{sweep['seed'].nunique()} seeds** (mode {mode}); this run agrees with the pooled "
        f"verdict in {pooled['agrees'].eq(True).sum()} of {pooled['agrees'].notna().sum()} "
        "comparisons it made."
    ))  # fmt: skip
    with pd.option_context("display.max_rows", 200):  # every F1 and gap comparison
        display(
            shown[(shown["metric"] == "f1") | (shown["group"] == "all")][
                [*KEYS, "pooled", "test_noise", "n_seeds", "verdict", "this run", "agrees"]
            ].set_index(KEYS)
        )
else:
    display(comparisons.assign(this_run=verdicts.with_intervals(comparisons))[
        [*KEYS, "this_run", "verdict"]].set_index(KEYS))  # fmt: skip

# %% [markdown]
# How stable is the temperature choice? The chosen τ per setting over the sweep's seeds, with
# the validation images per group behind it:

# %%
sweep_tuning = run.sweep_table("temperature")
if sweep_tuning is not None:
    picks = sweep_tuning[sweep_tuning["chosen"]].drop_duplicates(["setting", "seed"])
    display(picks.groupby("setting")["temperature"].value_counts().rename("seeds").to_frame())
    display(sweep_tuning.groupby(["setting", "group"])["val_n"].agg(["min", "max"]))

# %%
Markdown(
    "Quick mode trains small networks for a few epochs on 2,000 images at 32 px; "
    '`mode="full"` runs ResNet-18 and VGG-11 at paper scale. The summary chapter sets each '
    "of the paper's claims beside these pooled verdicts."
)

# %% [markdown]
# ### The claims this chapter tests
# Each seed paper's claim that this chapter tests, judged on the kept sweep exactly as in
# {doc}`07_summary`: its primary endpoint, the gates that must pass first (positive controls,
# manipulation checks, valid instruments), and one of five words (reproduced, contradicted, no
# effect, underpowered, untestable here), or *levelling down*.

# %%
claimed = run.claim_verdicts()
if claimed is not None:
    with pd.option_context("display.max_colwidth", None):
        display(claimed[["sweep", *claims.SHOWN]].set_index(["sweep", "claim"]))

# %% [markdown]
# ## Try it
# - `python -m fairkit run notebooks/03_spare.py -p share_stages 2`: share the first two stages in
#   the main comparison.
# - `python -m fairkit run notebooks/03_spare.py -p lam 0.8 -p temperatures "[0.5, 2.0, 16.0]"`:
#   lean on utility, and let validation choose between sharp and nearly flat weights (three
#   values keep SPARE at the controls' budget).
# - `python -m fairkit run notebooks/03_spare.py -p dark_fraction 0.05`: does SPARE help more when
#   dark skin is rarer?
# - `python -m fairkit run notebooks/03_spare.py -p backbones "['resnet18', 'vgg11']"`: the
#   paper's backbones (narrow, at 32 px) on a CPU; the sweep of this setting is the one the
#   backbone claims read (`make study`).
# - `python -m fairkit run notebooks/03_spare.py -p mode full` on a GPU: ResNet-18 and VGG-11 at
#   width 64 and 64 px on 40,000 images, each control and SPARE tuned over its grid
#   (`benchmarks/tuning.py` counts the trainings); an epoch took 4-5 s on one H100
#   (`benchmarks/results/deepfool_h100_*_full.txt`).

# %%
run.finish()
