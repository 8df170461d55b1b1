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
# # Quickstart: one classifier, two skin groups
#
# **Overview.** The whole path of the study in one page: generate a skin cohort from the causal
# model with darker skin under-represented in training, train a small convolutional network,
# and read its accuracy per skin group with fairlearn's `MetricFrame` on a balanced test set.
#
# **Prerequisites.** None beyond the README's `make book`. Later chapters explain each step.

# %% tags=["parameters"]
mode = "quick"
seed = 0
device = "auto"
dark_fraction = 0.15

# %% [raw] tags=["parameter-rules", "remove-cell"]
# dark_fraction: in [0, 1]

# %%
from fairkit import fairness, plots, runs
from fairkit.data import synth
from fairkit.models.classifier import backbone
from fairkit.training import TrainConfig, fit, predict

run = runs.start()
run.banner()
cfg = run.settings

# %% [markdown]
# ## A cohort with traceable bias
# Skin types IV–VI ("dark") make up `dark_fraction` of the training and validation images;
# the test set has both groups in equal numbers, the same causal model and no other bias.

# %%
splits = synth.make_splits(
    "skin",
    seed=seed,
    image_size=cfg.image_size,
    n_train=cfg.n_train,
    n_val=cfg.n_train // 4,
    n_test=cfg.n_test,
    under={"attribute": "skin_group", "group": "dark", "fraction": dark_fraction},
)
train, test = splits["train"], splits["test"]
train.meta.groupby("skin_group")["diagnosis"].value_counts().unstack()

# %%
examples = [train.subset(train.meta["skin_group"] == g).images[:8] for g in ("light", "dark")]
run.save_figure(
    plots.image_grid(examples, row_labels=["light skin", "dark skin"], title="Training images"),
    "examples",
)

# %% [markdown]
# ## Train and evaluate

# %%
model = backbone(
    "small_cnn",
    in_channels=train.images.shape[1],
    n_classes=len(train.classes),
    image_size=cfg.image_size,
    width=cfg.width,
    seed=seed,
)
config = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, seed=seed, device=run.device)
result = fit(model, train, config=config, val=splits["val"])
predictions = predict(result.model, test, device=run.device)
frame = fairness.group_metrics(predictions, sensitive_features="skin_group")
metrics = run.save_table(fairness.tidy(frame), "metrics")
frame.by_group

# %%
run.save_figure(
    plots.group_bars(
        metrics,
        x="metric",
        y="value",
        hue="skin_group",
        title="Test metrics per skin group",
        ylabel="score (0–1)",
    ),
    "metrics_by_group",
)

# %% [markdown]
# ## What we found

# %%
from IPython.display import Markdown

gap = frame.difference()["macro_recall"]
lower = fairness.lower_group(frame.by_group["macro_recall"], digits=3)
Markdown(
    f"Overall accuracy is **{frame.overall['accuracy']:.3f}**. Macro recall is "
    f"**{frame.by_group.loc['light', 'macro_recall']:.3f}** on light and "
    f"**{frame.by_group.loc['dark', 'macro_recall']:.3f}** on dark skin: "
    + (
        f"a gap of **{gap:.3f}**, lower for the *{lower}* group"
        if lower
        else "equal to three decimals"
    )
    + f" in this run, with dark skin at {dark_fraction:.0%} of training. One seed and no "
    "interval, so no verdict yet: chapter 2 adds intervals, and the chapters after it pool seeds."
)

# %% [markdown]
# ## Try it
# - `python -m fairkit run notebooks/00_quickstart.py -p dark_fraction 0.5`: does the gap close
#   when both groups are equally represented?
# - `python -m fairkit run notebooks/00_quickstart.py -p seed 1`: how much does the gap move
#   between seeds?
# - `python -m fairkit run notebooks/00_quickstart.py -p dark_fraction 0.02 -p mode full`.

# %%
run.finish()
