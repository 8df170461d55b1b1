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
# # Fairness across the pipeline
#
# **Overview.** A model's unfairness is made at every stage of its life: the data it is
# trained on, how its representation is learned, how it is adapted to the task, how it is
# corrected, and what happens to it after deployment. The review of fair foundation models
# by {cite}`fairfm2025` argues that fairness needs an intervention at each of these
# stages, that **self-supervised pretraining tends to be fairer than supervised training**,
# and that **fine-tuning** is the lever that aligns a pretrained model with its target.
# We test the two claims with the instrument of the other chapters, and follow one model
# from its datasheet to its deployment:
#
# 1. **data**: a training set in which the audited minority is rare, documented by its
#    datasheet;
# 2. **pretraining**: SimCLR {cite}`chen2020simclr` on an unlabelled pool drawn from the causal
#    model (the training sites; the same sites without the minority; another site);
# 3. **adaptation**: a linear probe on the frozen encoder, or full fine-tuning, against
#    supervised training from scratch;
# 4. **mitigation** (group-balanced resampling) and **post-processing** (group thresholds for
#    equalized odds), the interventions of {doc}`02_bias`;
# 5. **documentation**: a model card {cite}`mitchell2019modelcards` for every trained model;
# 6. **monitoring**: a label-free estimate of each group's performance on a drifting stream,
#    checked against the true labels that only a causal model knows.
#
# Every arm trains on the same labelled images with the same loop and a threshold chosen on
# validation data, and every comparison is a paired difference on the same test patients.
#
# **Prerequisites.** {doc}`02_bias` for the fairness report, the baselines and the verdicts.

# %% tags=["parameters"]
mode = "quick"
seed = 0
device = "auto"
modalities = ["skin", "cxr", "mri"]
minority_fraction = 0.1
pools = ["same_site", "no_minority", "other_site"]
run_pool_ablation = None  # None: full mode only; quick: the first pool here, all in the sweep
lrs = [0.001, 0.003]  # each whole-network arm's own grid, chosen on validation AUROC
probe_lrs = [0.03, 0.1]  # the linear probes' grid (a head alone learns at larger rates)
shift = "prevalence"
n_batches = None  # None: the mode's (quick: 24 batches of 250 images)
batch_size = None
onset = None  # None: half-way through the stream
ramp = 4
magnitude = 0.5

# %% [raw] tags=["parameter-rules", "remove-cell"]
# modalities: non-empty, distinct, each one of skin, cxr, mri
# minority_fraction: in (0, 0.5]
# pools: non-empty, distinct, each one of same_site, no_minority, other_site
# run_pool_ablation: None or bool
# lrs: non-empty, each > 0
# probe_lrs: non-empty, each > 0
# shift: one of site, group_mix, prevalence
# n_batches: None or int in [4, 1000]; None is the mode's monitor_batches
# batch_size: None or int in [20, 10000]; None is the mode's monitor_batch
# onset: None or int in [1, n_batches)
# ramp: int in [1, n_batches]
# magnitude: in [0, 1]

# %%
import pandas as pd
from IPython.display import Markdown, display

from fairkit import claims, model_card, monitoring, plots, runs, verdicts
from fairkit.data.datasheet import datasheet
from fairkit.studies import pipeline as study

run = runs.start()
run.banner()
s = run.settings
scenarios = {
    m: study.setting(m, s, seed=seed, device=run.device, minority_fraction=minority_fraction)
    for m in modalities
}
attributes = {m: sc.attribute for m, sc in scenarios.items()}
n_batches = s.monitor_batches if n_batches is None else n_batches
batch_size = s.monitor_batch if batch_size is None else batch_size
onset = n_batches // 2 if onset is None else onset
run_pool_ablation = mode == "full" if run_pool_ablation is None else run_pool_ablation
trained_pools = pools if run_pool_ablation else pools[:1]
arms = study.arms(trained_pools, checkpoint_dir=str(run.dir / "pretraining"))

# %% [markdown]
# ## Data: what the training set holds
# The first intervention is knowing the data. Each modality's audited minority makes up
# `minority_fraction` of the training images; the datasheet counts each group and its
# prevalence. The test set is balanced over the groups, and the external site is another
# device and population.

# %%
sheets = pd.concat(
    [
        datasheet(sc.train, [sc.attribute]).composition.assign(modality=m)
        for m, sc in scenarios.items()
    ],
    ignore_index=True,
)
run.save_table(sheets, "datasheets")
display(sheets.set_index(["modality", "attribute", "group"]).round(3))

# %% [markdown]
# ## Pretraining and adaptation
# For each pool, one SimCLR encoder is pretrained (lightly's NT-Xent loss and projection head,
# torchvision's crops, flips and brightness/contrast changes) on `ssl_pool` unlabelled images
# (in quick mode only the first pool here; the sweep behind the verdicts trains all three,
# `-p run_pool_ablation True` does it here),
# then adapted on the labelled training set: a **linear probe** trains the head alone on the
# frozen encoder; **fine-tuning** trains the whole network from the pretrained weights.
# **Supervised** is the same network trained from scratch. All arms train for the same epochs
# and keep their best validation epoch and a validation-chosen threshold; each arm's learning
# rate is tuned on its own grid by validation AUROC (the table below), so neither the control
# nor a pretrained arm wins by its settings.

# %%
predictions, reports, metrics, comparisons, tuning = {}, {}, [], [], []
for m, sc in scenarios.items():
    predictions[m], table = study.train_arms(sc, arms, lrs=lrs, probe_lrs=probe_lrs)
    tuning.append(table.assign(modality=m))
    for split in ("test", "external"):
        kept = (
            predictions[m]
            if split == "test"
            else {n: p for n, p in predictions[m].items() if n != "threshold"}
        )
        reps = reports[m, split] = sc.reports(kept, split=split)
        metrics.append(
            study.group_metrics(reps, attribute=sc.attribute).assign(modality=m, split=split)
        )
        comparisons.append(study.comparisons(reps, attribute=sc.attribute, setting=f"{m}, {split}"))
tuning = run.save_table(pd.concat(tuning, ignore_index=True), "tuning")
display(
    tuning.pivot_table(
        index="arm", columns=["modality", "candidate"], values="overall", sort=False
    ).round(3)
)
display(
    tuning[tuning["chosen_by"] != ""]
    .pivot(index="arm", columns="modality", values="candidate")
    .rename_axis(columns="kept (overall validation AUROC)")
)
metrics = run.save_table(pd.concat(metrics, ignore_index=True), "metrics")
comparisons = run.save_table(pd.concat(comparisons, ignore_index=True), "comparisons")
shown = metrics.assign(attribute=metrics["modality"].map(attributes))
display(run.save_figure(plots.downstream_groups(shown, metric="auroc", title="Per-group AUROC of each arm (95% intervals)",
                                                ylabel="AUROC (0–1)"), "auroc"))  # fmt: skip

# %% [markdown]
# ## What each stage buys (this run)
# Each row pairs an intervention with its control on the same patients: the difference of the
# per-group accuracy gap (max − min over groups), negative when the intervention is fairer.
# Post-processing decides on the test set only, so it has no external-site row.

# %%
display(run.save_figure(plots.stage_forest(comparisons, metric="gap_accuracy",
                                           title="Change of the accuracy gap, intervention − control (this run)",
                                           xlabel="difference of accuracy gap (0–1)"), "stages"))  # fmt: skip
display(
    study.stages(comparisons, modalities=modalities).set_index(
        ["stage", "intervention", "modality"]
    )
)

# %% [markdown]
# ## Model cards
# Every trained model of the run gets a model card (Markdown and JSON, in the run folder's
# `cards/`): intended use, the training cohort's datasheet, per-group metrics with intervals on
# the test set and the external site, the gaps whose interval excludes zero, and caveats. The
# numbers are the rows of `metrics.csv`. Shown here: the card of the first modality's best
# model, the arm with the best worst-group AUROC on *validation* data among the arms every run
# trains (choosing on the test set would flatter its test numbers).

# %%
cards = {}
for m, sc in scenarios.items():
    for name in predictions[m]:
        split_reports = {
            split: reports[m, split][name]
            for split in ("test", "external")
            if name in reports[m, split]
        }
        cards[m, name] = model_card.model_card(
            f"{m}: {name}", reports=split_reports, attribute=sc.attribute, train=sc.train, positive=sc.positive,
            modality=m, intended_use=study.intended_use(sc), provenance=run.provenance(),
            caveats=study.card_caveats(arms[name], s),
            metrics=study.PER_GROUP, gap_metrics=study.GAPS)  # fmt: skip
        model_card.write_card(cards[m, name], run.dir / "cards" / m)
m0 = modalities[0]
best = {
    m: study.best_arm(sc, predictions[m], study.always_trained(pools))
    for m, sc in scenarios.items()
}
display(Markdown(cards[m0, best[m0]].to_markdown()))

# %% [markdown]
# ## Monitoring after deployment
# The best model of each modality is deployed on a stream of `n_batches` batches from the
# training sites; from batch `onset` on, a growing share of each batch (up to `magnitude`,
# over `ramp` batches) comes from the shifted population (`shift`: by default positives only,
# a rise in prevalence; or another site; or the minority only). NannyML's confidence-based performance estimation (CBPE)
# estimates each group's accuracy per batch **without labels**, from the model's calibrated
# confidence on reference data: a labelled stream of as many batches from the training sites,
# the model's validation before deployment. An alarm is an estimate outside the band of ±3
# standard deviations of the reference batches. The causal model knows every label, so the
# estimate is checked against the realised accuracy, and a stationary stream (no shift) gives
# the false-alarm rate. CBPE assumes that the model's calibration holds on the stream; a rise
# in prevalence breaks that assumption (the same image is more often diseased), which is
# exactly what a reader should see it cope with, or not.

# %%
timelines, summaries = [], []
for m, sc in scenarios.items():
    timeline, summary = study.watch(sc, predictions[m][best[m]], shift=shift, n_batches=n_batches, batch_size=batch_size,
                                    onset=onset, ramp=ramp, magnitude=magnitude, device=run.device)  # fmt: skip
    timelines.append(timeline.assign(modality=m, model=best[m]))
    summaries.append(summary.assign(modality=m, model=best[m], seed=seed))
timelines = run.save_table(pd.concat(timelines, ignore_index=True), "monitor")
summaries = run.save_table(pd.concat(summaries, ignore_index=True), "monitor_summary")
for m in modalities:
    display(run.save_figure(plots.monitor_timeline(timelines[timelines["modality"] == m], attribute=attributes[m], onset=onset,
                                                   title=f"{m}: each group's accuracy on the deployment stream",
                                                   ylabel="accuracy (0–1)"), f"monitor_{m}"))  # fmt: skip
display(summaries.set_index(["modality", "stream", "group"]).round(3))

# %% [markdown]
# ## What we found
# Every comparison of this run is saved as `comparisons.csv`; the verdicts pool the seeds of the
# sweep kept in `results/` (`make study`): the mean paired difference over seeds with its
# seed-level 95% t interval. **better** / **worse** only when that interval excludes zero with
# at least five seeds. The stage table gathers the chapter: the datasheet, each intervention
# against its control, and the monitor on the drifting stream (pooled over the same seeds).

# %%
KEYS = verdicts.COMPARISON_KEYS
sweep, monitored = run.sweep_table("comparisons"), run.sweep_table("monitor_summary")
if sweep is not None:
    pooled = run.save_table(
        verdicts.beside_run(verdicts.pool_seeds(sweep, by=KEYS), comparisons), "verdicts"
    )
    seeds_pooled = sweep["seed"].nunique()
else:
    pooled, seeds_pooled = comparisons.assign(n_seeds=1), 1
monitored = summaries if monitored is None else monitored
display(Markdown(study.findings(pooled, modalities=modalities, seeds=seeds_pooled, mode=mode)))
rates = monitoring.pool_summaries(monitored)
display(study.stages(pooled, modalities=modalities, datasheets=sheets, monitored=rates)
        .set_index(["stage", "intervention", "modality"]))  # fmt: skip
display(rates.set_index(["modality", "stream", "group"]).round(3))

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
# - `python -m fairkit run notebooks/06_pipeline.py -p minority_fraction 0.03`: a rarer
#   minority, where an unlabelled pool that holds it has the most to add.
# - `python -m fairkit run notebooks/06_pipeline.py -p shift site -p magnitude 1.0`: the
#   stream moves wholly to another site instead; is there a drift in performance to catch?
# - `python -m fairkit run notebooks/06_pipeline.py -p magnitude 0.3`: a drift a third as
#   strong; how long until the first alarm?
# - `python -m fairkit run notebooks/06_pipeline.py -p run_pool_ablation True -p modalities "['mri']"`:
#   the three pretraining pools (with, without the minority, another site) for one modality.

# %%
run.finish()
