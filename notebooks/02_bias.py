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
# # How bias enters
#
# **Overview.** We inject two kinds of bias into the training data of each modality at chosen
# strengths — under-representation of a group, and an artifact tied to the disease — train the
# same classifier, and measure on a balanced, unbiased test set how each group fares. Then we
# ask how much of a model's skill came from a shortcut, by removing the artifact from every test
# image with its exact counterfactual, and compare the standard mitigation baselines.
#
# Every number carries a 95% bootstrap interval (patients resampled). Gaps are fairlearn's:
# the *equalized-odds gap* is max(|ΔTPR|, |ΔFPR|) across groups (fairlearn's default; MEDFAIR
# reports a mean-based variant, which the report also carries as `equalized_odds_mean`), the
# *equal-opportunity gap* is |ΔTPR|. Decision thresholds are chosen on validation data
# (Youden's J), never on the test set.
#
# **Prerequisites.** {doc}`01_data` for the cohorts and the bias knobs.
#
# | modality | task (positive class) | audited attribute | artifact |
# |---|---|---|---|
# | skin | melanoma or BCC (malignant) | skin group (dark = types IV–VI) | ruler |
# | chest X-ray | any finding (abnormal) | sex | support device |
# | brain MRI | dementia | age group (old ≥ 65) | 3T scanner |

# %% tags=["parameters"]
mode = "quick"
seed = 0
device = "auto"
modalities = ["skin", "cxr", "mri"]
minority_fractions = [0.5, 0.25, 0.1]
artifact_strengths = [0.0, 0.5, 0.9]
label_noise_rates = [0.0, 0.3]
baseline_fraction = 0.1
fixed_majority = True

# %% [raw] tags=["parameter-rules", "remove-cell"]
# modalities: non-empty, distinct, each one of skin, cxr, mri
# minority_fractions: non-empty, each in (0, 1)
# artifact_strengths: non-empty, each in [0, 1]
# label_noise_rates: non-empty, each in [0, 1]
# baseline_fraction: in (0, 1)

# %%
import pandas as pd
from IPython.display import Markdown, display

from fairkit import plots, runs, tuning, verdicts
from fairkit.experiment import Experiment
from fairkit.studies import bias
from fairkit.verdicts import with_intervals

run = runs.start()
run.banner()
experiments = {
    m: Experiment(m, run.settings, seed, run.device, fixed_majority=fixed_majority)
    for m in modalities
}

# %% [markdown]
# ## Under-representation
# The minority group (dark skin, women, the old) makes up a decreasing fraction of training;
# the test set has the groups in equal numbers. With `fixed_majority` (the default) the majority
# keeps half of the quick-mode training size and minority images are taken away, so the question
# is only "fewer images of this group". With `fixed_majority=False` the total stays fixed and
# every minority image removed is replaced by a majority one; then two effects mix, since more
# majority images can also teach the minority's model (SPARE's chapter returns to this).
# AUROC does not depend on a threshold; recall and the equalized-odds gap do, and the threshold
# is chosen on a validation set that is as biased as training.

# %%
under_groups, under_gaps = bias.sweep_all(experiments.values(), "under", minority_fractions)
run.save_table(under_groups, "under_by_group")
display(
    run.save_figure(
        plots.amplification_curves(
            under_groups,
            under_gaps,
            metric="auroc",
            gap="gap_auroc",
            xlabel="minority share of training images",
            title="AUROC per group and AUROC gap vs. under-representation",
        ),
        "under_curves",
    )
)
run.save_figure(
    plots.amplification_curves(
        under_groups,
        under_gaps,
        metric="recall",
        xlabel="minority share of training images",
        title="Recall per group and equalized-odds gap (at the validation threshold)",
    ),
    "under_recall",
)

# %% [markdown]
# ## A spurious artifact
# The artifact's rate differs between diseased and healthy training images by the given
# strength (0: independent; 1: a perfect shortcut). In the test set it is independent.


# %%
def sweep_and_plot(kind, strengths, *, xlabel, title):
    """ERM at each strength of one bias on every modality: tables kept, AUROC curves shown."""
    groups, gaps = bias.sweep_all(experiments.values(), kind, strengths)
    run.save_table(groups, f"{kind}_by_group")
    curves = plots.amplification_curves(groups, gaps, metric="auroc", xlabel=xlabel, title=title)
    display(run.save_figure(curves, f"{kind}_curves"))
    return groups, gaps


spurious_groups, spurious_gaps = sweep_and_plot(
    "spurious",
    artifact_strengths,
    xlabel="artifact-disease strength in training",
    title="AUROC per group and equalized-odds gap vs. spurious-artifact strength",
)

# %% [markdown]
# ## Label noise in one group
# The minority's diagnoses are replaced by another at random in a growing fraction of its
# training and validation images (a replacement within the malignant or within the benign
# diagnoses changes nothing in the binary task, so the binary flip rate is lower than the
# nominal one). The test labels are clean: a model that learned the noise shows it there.

# %%
noise_groups, noise_gaps = sweep_and_plot(
    "label_noise",
    label_noise_rates,
    xlabel="minority diagnoses replaced (share)",
    title="AUROC per group and equalized-odds gap vs. minority label noise",
)

# %% [markdown]
# ## The shortcut test
# Train with the strongest artifact tie, test on images with the same tie, then remove the
# artifact from each of those test images by its exact counterfactual: same patient, same
# lesion or anatomy, no artifact. The fall in AUROC is what the model owed to the shortcut.

# %%
shortcut = pd.concat(
    [bias.shortcut_test(e, max(artifact_strengths)) for e in experiments.values()],
    ignore_index=True,
)
run.save_table(shortcut, "shortcut")
run.save_figure(
    plots.shortcut_bars(
        shortcut, title="Shortcut test: AUROC before and after removing the artifact"
    ),
    "shortcut",
)

# %% [markdown]
# ## Baselines, each tuned alike
# All methods on the same cohorts, with the minority at `baseline_fraction` of training:
# ERM, group-balanced resampling, inverse-frequency reweighting, GroupDRO, one model per group
# (in-group), and fairlearn's `ThresholdOptimizer` (equalized odds) on the ERM model's scores.
#
# A baseline is only a baseline if it had the method's chance. Each gets the same budget of
# trainings (`fairkit.tuning.BUDGET`) over its own hyperparameter: the learning rate for ERM,
# resampling and in-group models, the exponent of the inverse-frequency weights (1 balances the
# groups' totals, 0 is ERM), GroupDRO's step size η; the threshold optimiser post-processes the
# tuned ERM. A candidate is chosen on *validation* data (biased like training) by one of the
# three rules of MEDFAIR (Zong et al., 2023): the best overall AUROC, the best worst-group
# AUROC, or the smallest distance to the point with the best overall AUROC and the smallest
# AUROC gap among the candidates. The test set plays no part in the choice. Each candidate is
# trained once and keeps the epoch of its best overall validation AUROC; the rules choose
# among candidates, not among epochs. The tuning table:
# each candidate's validation scores and the rules that keep it.

# %%
tuned = {m: bias.tune_baselines(e, strength=baseline_fraction) for m, e in experiments.items()}
tuning_table = run.save_table(
    pd.concat([tuning.stacked(t, modality=m) for m, t in tuned.items()], ignore_index=True),
    "tuning",
)
print(f"Budget: {tuning.BUDGET} trainings a method (the threshold optimiser reuses ERM's).")
tuning_table.set_index(["modality", "method", "candidate"])[
    ["overall", "worst_group", "gap", "distance", "chosen_by"]
].round(3)

# %% [markdown]
# Under each rule, every baseline at the candidate that rule keeps (ERM too). The figure shows
# the first rule, overall validation AUROC: what a developer with no fairness goal would keep.

# %%
compared = {
    (rule, m): bias.compare_baselines(e, tuned[m], strength=baseline_fraction, rule=rule)
    for rule in tuning.RULES
    for m, e in experiments.items()
}
methods = run.save_table(
    pd.concat([t for t, _ in compared.values()], ignore_index=True), "baselines"
)
by_overall = methods[methods["rule"] == tuning.RULES[0]]
display(
    run.save_figure(
        plots.method_table(
            by_overall,
            title="Tuned baselines, chosen by overall validation AUROC: worst-group scores "
            "and fairness gaps (95% CI)",
        ),
        "baselines",
    )
)
by_overall.assign(value=with_intervals(by_overall)).pivot(
    index=["modality", "method"], columns="metric", values="value"
)

# %% [markdown]
# Each baseline minus ERM on the same test patients (paired 95% interval), under each rule;
# the pooled verdicts over seeds are at the end of the chapter. Resampling, reweighting and
# GroupDRO decide at one validation threshold, as ERM does; in-group models and the threshold
# optimiser decide per group, so their recall differences carry their thresholds too (AUROC
# does not depend on a threshold). Chapter 3 gives every baseline per-group thresholds.

# %%
baseline_differences = pd.concat(
    [
        bias.baseline_differences(experiments[m], reports, rule=rule)
        for (rule, m), (_, reports) in compared.items()
    ],
    ignore_index=True,
)
shown_rule = baseline_differences["comparison"] == f"baseline, {tuning.RULE_NAMES['overall']}"
per_group = baseline_differences[shown_rule & (baseline_differences["group"] != "all")]
run.save_figure(
    plots.group_intervals(
        per_group.assign(
            attribute=per_group["setting"].map(
                {m: e.task.attribute for m, e in experiments.items()}
            )
        ),
        y="a",
        panels="setting",
        title="Each tuned baseline minus ERM, chosen by overall AUROC, this run (paired 95% CI)",
        difference="method − ERM",
    ),
    "baseline_differences",
)

# %% [markdown]
# Does a tuned baseline still cost the majority much AUROC (this run, chosen by overall AUROC)?
# Where one does, the best validation AUROC of its whole grid stands beside ERM's: a grid that
# never comes near ERM's is a method that cannot keep the majority at this training length,
# not one left untuned. (GroupDRO, run as its paper's code runs it, draws the groups equally
# often and then up-weights the worse one: it is never less balanced than resampling.
# Reweighting at exponent 1 balances the same totals with a few heavy images a batch, which
# makes its gradients noisier; the tuning table shows what that grid's candidates reach.)

# %%
costs = bias.majority_costs(
    per_group, tuning_table, minority={m: e.task.minority for m, e in experiments.items()}
)
Markdown("\n".join(f"- {line}" for line in costs) or "- none: every tuned baseline keeps it")

# %% [markdown]
# ### Is the majority's cost the method's or the training length's?
# Resampling and GroupDRO draw the majority's images less often than ERM does, and
# reweighting gives them less weight: per epoch, the majority is learned less. The same
# candidates (overall rule, tuned at the loop's length), ERM included, trained again for twice
# the epochs on the same cohorts. If a method's own majority AUROC rises to ERM's while ERM's
# holds, the loop's length made the cost, not the method; if ERM's falls, the difference
# shrinks for another reason. Each row: the method's and ERM's AUROC and their paired
# difference on the same test patients (95% interval); the pooled verdicts are at the end of
# the chapter.

# %%
longer = pd.concat(
    [
        bias.longer_training(e, tuned[m], strength=baseline_fraction, rule=tuning.RULES[0])
        for m, e in experiments.items()
    ],
    ignore_index=True,
)
lengths = pd.concat([baseline_differences[shown_rule], longer], ignore_index=True)
lengths = lengths[(lengths["metric"] == "auroc") & lengths["a"].isin(bias.REBALANCING)]
lengths = lengths.assign(
    epochs=lengths["comparison"]
    .str.extract(r"(\d+) epochs$", expand=False)
    .astype(float)
    .fillna(run.settings.epochs)
    .astype(int),
    difference=with_intervals(lengths),
)
(
    lengths.assign(method=lengths["a_value"].round(3), ERM=lengths["b_value"].round(3))
    .pivot(
        index=["setting", "a", "group"], columns="epochs", values=["method", "ERM", "difference"]
    )
    .swaplevel(axis=1)
    .sort_index(axis=1, level=0, sort_remaining=False)
    .rename_axis(index=["modality", "method", "group"], columns=["epochs", "AUROC"])
)

# %% [markdown]
# ### Does the selection rule change the ranking?
# MEDFAIR's lesson is that which model one keeps can decide which method "wins". Per rule,
# each method's rank by test worst-group AUROC in every cohort (modality, and seed where the
# kept sweep has several), Friedman's test of "all methods rank alike" and the Nemenyi
# post-hoc test (critical-difference diagram: methods joined by a bar are not told apart at
# the 5% level). The threshold optimiser keeps ERM's scores, so its AUROC is ERM's and it is
# left out.

# %%
kept = run.sweep_table("baselines")
if kept is not None and "rule" not in kept:
    print("The kept sweep predates the selection rules: this run's cohorts are ranked instead.")
    kept = None
ranked = bias.rank_methods(kept if kept is not None else methods)
if ranked.groupby(["modality", *(["seed"] if "seed" in ranked else [])]).ngroups < 2:
    print("One cohort cannot be ranked: the test needs several modalities or a kept sweep.")
else:
    tests = {rule: bias.friedman_nemenyi(ranked[ranked["rule"] == rule]) for rule in tuning.RULES}
    blocks = min(t.blocks for t in tests.values())
    source = "the kept sweep" if kept is not None else "this run"
    display(
        run.save_figure(
            plots.critical_difference(
                tests,
                names=tuning.RULE_NAMES,
                title=f"Rank by test worst-group AUROC under each selection rule ({blocks} "
                f"cohorts, {source})",
            ),
            "selection_rules",
        )
    )
    display(
        pd.DataFrame({tuning.RULE_NAMES[r]: t.mean_rank for r, t in tests.items()})
        .round(2)
        .rename_axis("mean rank (1 = best)")
    )

# %% [markdown]
# ### Where the threshold optimiser's constraint holds
# fairlearn's `ThresholdOptimizer` picks (randomised) thresholds per group that equalise TPR and
# FPR **on the validation set**, and gives up accuracy in the better-served group to do so. The
# validation set is biased like training, so the minority's rates there rest on a handful of
# images: the constraint holds (in expectation: the decisions are randomised) where it was
# fitted and need not hold on the balanced test set, where the gap can come out smaller, equal
# or larger than ERM's. Per group, where the thresholds were fitted and on test, with the
# validation images behind each rate (the tuned ERM and its optimiser, as in the table above):

# %%
transfer = pd.concat(
    [bias.threshold_transfer(e, strength=baseline_fraction,
                             threshold=tuned[m]["threshold"].chosen["overall"])
     for m, e in experiments.items()],
    ignore_index=True,
)  # fmt: skip
run.save_table(transfer, "threshold_transfer")
transfer.assign(value=with_intervals(transfer)).pivot(
    index=["modality", "group", "metric", "val_positives", "val_images"],
    columns=["method", "split"],
    values="value",
)

# %% [markdown]
# ## Calibration by group
# A score a clinician reads as a probability must be calibrated in every group. Expected
# calibration error (10 equal-width bins; 0 is perfect) per group, for every baseline at the
# same minority share (the threshold optimiser keeps ERM's scores, so it is left out):

# %%
ece = pd.concat(
    [bias.calibration(e, {m: r for m, r in compared["overall", e.modality][1].items()
                          if m != "threshold"})
     for e in experiments.values()],
    ignore_index=True,
)  # fmt: skip


def keep_by_modality(table, name, *, y, title):
    """Save a per-group table and its interval plot (one panel per modality) as ``name``."""
    run.save_table(table, name)
    return run.save_figure(plots.group_intervals(table, y=y, panels="modality", title=title), name)


keep_by_modality(
    ece, "calibration", y="method", title="Expected calibration error per group (95% CI)"
)

# %% [markdown]
# ## Intersections and an external site
# The marginal groups can hide a gap inside them. ERM's AUROC and recall per intersection of the
# audited attribute with sex (skin, MRI) or age group (chest X-ray):

# %%
crossed = pd.concat(
    [bias.intersections(e, strength=baseline_fraction) for e in experiments.values()],
    ignore_index=True,
)
keep_by_modality(
    crossed, "intersections", y="group", title="ERM per intersection of two attributes"
)

# %% [markdown]
# The same ERM models on patients of another site (the causal model under do(site = X):
# another device and population mix), balanced like the test set, at the internal validation
# threshold. Different patients, so the two cohorts are compared by their intervals only:

# %%
external = pd.concat(
    [bias.external_site(e, strength=baseline_fraction) for e in experiments.values()],
    ignore_index=True,
)
keep_by_modality(
    external, "external_site", y="cohort", title="ERM on the internal test set and an external site"
)

# %% [markdown]
# ## What we found

# %%
metrics = run.save_table(
    pd.concat(
        [
            under_gaps.assign(experiment="under-representation"),
            spurious_gaps.assign(experiment="spurious artifact"),
        ],
        ignore_index=True,
    ),
    "metrics",
)
lines = []
for modality in modalities:
    found = bias.findings(
        modality,
        experiments[modality].task.minority,
        under=(under_groups, under_gaps),
        spurious=(spurious_groups, spurious_gaps),
        shortcut=shortcut,
    )
    lines += [
        f"- **{modality}** (minority share {found.shares[0]:.0%} → {found.shares[1]:.0%}): "
        f"{found.minority} AUROC {found.minority_auroc}; AUROC gap {found.auroc_gap}; "
        f"equalized-odds gap {found.eodds_gap}. Removing the artifact moves mean AUROC from "
        f"{found.shortcut_auroc[0]:.3f} to {found.shortcut_auroc[1]:.3f}.",
        f"  Artifact tie {found.ties[0]:g} → {found.ties[1]:g}: mean AUROC over groups "
        f"{found.tied_auroc[0]:.3f} → {found.tied_auroc[1]:.3f}, equalized-odds gap "
        f"{found.tied_eodds_gap}.",
    ]
display(Markdown("\n".join(lines)))

# %% [markdown]
# Is the widening real? Each sweep's strongest setting minus its weakest, on the same test
# patients (a paired difference, 95% interval): **worse** means the stronger bias detectably
# lowered a group's AUROC or recall, or widened a gap; *no detectable difference* means this
# run cannot tell the two settings apart. The baselines' differences from ERM follow. Where the
# sweep kept in `results/` has this chapter's parameters, its seeds are pooled beside this run.

# %%
comparisons = run.save_table(
    pd.concat(
        [
            bias.amplification(e, kind, strengths)
            for e in experiments.values()
            for kind, strengths in (
                ("under", minority_fractions),
                ("spurious", artifact_strengths),
                ("label_noise", label_noise_rates),
            )
        ]
        + [baseline_differences, longer],
        ignore_index=True,
    ),
    "comparisons",
)
sweep = run.sweep_table("comparisons")
if sweep is not None:
    pooled = verdicts.pool_seeds(sweep, by=verdicts.COMPARISON_KEYS)
    shown = verdicts.beside_run(pooled, comparisons)
    shown["pooled"] = with_intervals(shown)
    columns = ["this run", "verdict (this run)", "pooled", "n_seeds", "verdict", "agrees"]
else:
    shown = comparisons.assign(**{"this run": with_intervals(comparisons)})
    columns = ["this run", "verdict"]
shown.set_index(verdicts.COMPARISON_KEYS)[columns]

# %% [markdown]
# ## Try it
# - `python -m fairkit run notebooks/02_bias.py -p minority_fractions "[0.5, 0.02]"`: does the
#   gap keep growing as the group nearly vanishes?
# - `python -m fairkit run notebooks/02_bias.py -p modalities "['skin']" -p seed 1`: how much do
#   the curves move with the seed?
# - `python -m fairkit run notebooks/02_bias.py -p fixed_majority False`: replace minority images
#   by majority ones at a fixed total; does the minority still lose?
# - `python -m fairkit run notebooks/02_bias.py -p mode full` on a GPU: ResNet-18 at 64 px.

# %%
run.finish()
