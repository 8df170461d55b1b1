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
# # Data with traceable bias
#
# **Overview.** The study's default data come from three structural causal models — skin
# (dermoscopy-like), chest X-ray and brain MRI — written as named mechanisms with explicit
# parents and exogenous noise. Because every sample keeps its noise, the *exact* counterfactual
# of any image exists: hold the noise, set a variable, re-render its descendants. Biases are then
# injected by selection at chosen strengths and documented in datasheets.
#
# **Prerequisites.** {doc}`00_quickstart`.

# %% tags=["parameters"]
mode = "quick"
seed = 0
device = "auto"
dark_fraction = 0.1
ruler_strength = 0.8
run_controls = None  # the testbed's positive controls; None: full mode only, quick: the sweep's

# %% [raw] tags=["parameter-rules", "remove-cell"]
# dark_fraction: in [0, 1]
# ruler_strength: in [0, 1]
# run_controls: None or bool

# %%
from IPython.display import Markdown, display

from fairkit import plots, runs, verdicts
from fairkit.data import bias, datasheet, synth
from fairkit.studies import testbed

run = runs.start()
run.banner()
size = max(run.settings.image_size, 32)
n = run.settings.n_test
run_controls = mode == "full" if run_controls is None else run_controls

# %% [markdown]
# ## Three causal models
# Each graph shows every variable of a modality, coloured by the covariate taxonomy of
# SynthFair: *patient* covariates (sex, age, skin type, race), *external* ones (site, device,
# artifacts), the *disease*, and the *appearance* variables through which they reach the pixels.

# %%
GROUPS = {"skin": "skin_group", "cxr": "race", "mri": "age_group"}
cohorts = {m: synth.generate(m, n, seed=seed, image_size=size) for m in synth.MODALITIES}
for modality in synth.MODALITIES:
    scm = synth.model(modality)
    kinds = {m.name: m.kind for m in scm.mechanisms}
    fig = plots.causal_graph(scm.edges(), kinds, title=f"Causal graph: {modality}")
    display(run.save_figure(fig, f"graph_{modality}"))

# %% [markdown]
# ## What the images look like, per group and diagnosis

# %%
for modality, group in GROUPS.items():
    grid, rows, cols = cohorts[modality].examples(rows=group, cols="diagnosis")
    fig = plots.image_grid(
        grid, row_labels=rows, col_labels=cols, title=f"{modality}: {group} x diagnosis", size=1.6
    )
    display(run.save_figure(fig, f"examples_{modality}"))

# %% [markdown]
# ## Exact counterfactuals
# Each row answers a do(...) question for the same eight patients: the noise stays, the
# intervened variable and its descendants change, nothing else does.

# %%
INTERVENTIONS = {
    "skin": [
        {"skin_type": "I"},
        {"skin_type": "VI"},
        {"sex": "M"},
        {"age": 85},
        {"diagnosis": "melanoma"},
    ],
    "cxr": [{"sex": "F"}, {"sex": "M"}, {"age": 85}, {"view": "AP"}, {"diagnosis": "cardiomegaly"}],
    "mri": [{"age": 30}, {"age": 85}, {"sex": "M"}, {"diagnosis": "dementia"}],
}
for modality, dos in INTERVENTIONS.items():
    sample = cohorts[modality].subset(range(8))
    rows = [sample.images] + [synth.counterfactual(sample, do).images for do in dos]
    labels = ["factual"] + [f"do({k}={v})" for do in dos for k, v in do.items()]
    fig = plots.image_grid(rows, row_labels=labels, title=f"{modality}: exact counterfactuals")
    display(run.save_figure(fig, f"counterfactuals_{modality}"))

# %% [markdown]
# ## Datasheets: a natural cohort and a biased one
# The biased skin cohort keeps darker skin (types IV–VI) at `dark_fraction` of the images and
# ties rulers to melanoma with strength `ruler_strength` (the difference in ruler rate between
# melanoma and the rest).

# %%
under = bias.UnderRepresent("skin_group", "dark", dark_fraction)
spurious = bias.Spurious("ruler", "melanoma", ruler_strength)
natural = cohorts["skin"]
biased = synth.generate("skin", n, seed=seed, image_size=size, under=under, spurious=spurious)
attributes = ["skin_group", "sex", "age_group", "site"]
sheets = {
    "natural": datasheet.datasheet(natural, attributes, synth.model("skin")),
    "biased": datasheet.datasheet(biased, attributes),
}
for name, sheet in sheets.items():
    run.save_table(sheet.composition, f"datasheet_{name}")
    fig = plots.prevalence_bars(
        sheet.composition, attribute="skin_group", title=f"Skin cohort ({name}): diagnoses by group"
    )
    display(run.save_figure(fig, f"prevalence_{name}"))
sheets["biased"].composition.round(3)

# %% [markdown]
# The intersections of skin group and sex in the biased cohort, and the covariate taxonomy:

# %%
sheets["biased"].intersections.query("intersection == 'skin_group x sex'").round(3)

# %%
sheets["natural"].taxonomy

# %% [markdown]
# ## Can this testbed test the claims?
# A method can only be seen to remove a bias that the testbed puts in and that its instruments
# can see; a null result from a testbed that could not show the effect is no evidence. So before
# any method is judged, each modality must pass four controls (`fairkit.studies.testbed`):
#
# - **(a) under-representation hurts the minority.** ERM trained with the minority (dark skin,
#   women, the old) at 10% of training instead of 50%, the majority's images fixed, loses at
#   least 0.05 minority AUROC on the balanced test set, with a pooled interval above zero, and
#   more than the majority loses.
# - **(b) the oracle helps.** Chapter 5's oracle, real images of the rare (group, finding) cells
#   as many as FairGen's square-root rule asks, recovers at least half of that loss.
# - **(c) the instruments see.** Chapter 5's judges, group and finding classifiers of real
#   images, reach 0.85 balanced accuracy on real test images.
# - **(d) the counterfactual judges see.** Chapter 4's judges find the value an *exact*
#   counterfactual set in at least 80% of images, in each direction.
#
# The causal models' knobs were set on these controls alone, never on a method's result: chest
# X-ray's breast-tissue shadows, which hide part of a finding's contrast, and its findings' mix
# by sex (effusion in women, heart and lung-field signs in men); MRI's split of the disease's
# atrophy into a global part and an onset-typical one (medial in the old, posterior cortical in
# the young); skin's sun damage that grows with age and hair that mostly marks men. Each knob's
# comment in `fairkit/data` names the control that chose it and what it measured before. A
# control that fails is a gate: the claims that need it are *untestable here*, whatever a
# method does. Quick mode shows the kept sweep of this chapter (five seeds); `run_controls=True`
# computes this seed's controls too (about two minutes on two CPU cores).

# %%
if run_controls:
    controls = run.save_table(
        testbed.controls(run.settings, seed=seed, device=run.device), "testbed_controls"
    )
sweep = run.sweep_table("testbed_controls")
pooled = sweep if sweep is not None else (controls if run_controls else None)
gates = None if pooled is None else testbed.gates(testbed.pooled(pooled))
if gates is None:
    display(Markdown("No controls to show: no kept sweep, and `run_controls` is off."))
else:
    at = (runs.scale(runs.RESULTS, "01_data", sweep) if sweep is not None
          else f"this run: {mode} mode, {run.settings.image_size} px")  # fmt: skip
    display(Markdown(f"Pooled over **{int(gates['seeds'].max())}** seed(s); {at}; the judges at "
                     "FairGen's image size:"))  # fmt: skip
    display(
        gates.assign(estimate=verdicts.with_intervals(gates))
        .set_index(["modality", "control"])[["estimate", "threshold", "passes", "margin"]]
        .round(3)
    )
    display(run.save_figure(plots.control_margins(gates), "testbed_controls"))

# %% [markdown]
# ## What we found

# %%
strengths = run.save_table(
    bias.strength_table(biased.meta, under=under, spurious=spurious), "metrics"
)
measured = strengths.set_index("quantity")["measured"]
contrast = natural.meta.groupby("skin_group")["contrast"].mean()
Markdown(
    f"- The biased cohort has **{measured['under_fraction']:.1%}** dark-skin images "
    f"(asked: {dark_fraction:.0%}) and a ruler-melanoma strength of "
    f"**{measured['spurious_strength']:.3f}** (asked: {ruler_strength}).\n"
    f"- Lesion contrast averages **{contrast['light']:.2f}** on light and "
    f"**{contrast['dark']:.2f}** on dark skin: the generator makes lesions harder to see on "
    "darker skin, as in real dermoscopy.\n"
    "- do({}) re-renders every image bit for bit; the tests check this for every modality.\n"
    + testbed.found(gates)
)

# %% [markdown]
# ## Try it
# - `python -m fairkit run notebooks/01_data.py -p dark_fraction 0.02`: how rare can a group get
#   before a diagnosis cell is empty in the datasheet?
# - `python -m fairkit run notebooks/01_data.py -p ruler_strength 1.0`: a perfect shortcut.
# - In a notebook: `synth.counterfactual(cohort, {"site": "X"})` moves every patient to the
#   external site. Which variables change?
# - `python -m fairkit run notebooks/01_data.py -p run_controls True -p seed 5`: this seed's
#   positive controls beside the kept sweep's. Do the failing gates fail in this seed too?
# - `python benchmarks/testbed.py --modalities mri --seeds 10`: is MRI's oracle underpowered at
#   five seeds, or does it not help?

# %%
run.finish()
