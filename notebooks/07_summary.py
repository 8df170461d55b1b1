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
# # Summary: the papers' claims against our numbers
#
# Every claim of the seed papers that a chapter tests, beside what we measured and a verdict.
# Nothing here is retyped: the numbers are the sweeps kept in `results/` (`make study`: each
# chapter at its default parameters, over several seeds), pooled as in the chapters — the
# paired difference of the two methods on the same test patients, averaged over seeds with a
# seed-level 95% t interval. A claim is
#
# - **reproduced** when every comparison it predicts comes out as predicted (its interval
#   excludes zero on the predicted side);
# - **partly** when some do, or when every one does but a claimed size (FairGen's "by 35.2%")
#   lies outside our interval: reproduced in direction only;
# - **not reproduced** when none does (no detectable difference, or the opposite);
# - **inconclusive** when a comparison has fewer seeds than the minimum.
#
# A comparison that no seed could measure (its instrument, e.g. a judge of counterfactuals,
# was at chance in every seed) is counted as *not measured* and left out of the verdict, which
# then rests on the comparisons that were measured.
#
# Our scale is not the papers': synthetic images at 16-32 px and small networks in quick mode. A
# claim not reproduced here is a claim not reproduced *at this scale*, with its interval.

# %% tags=["parameters"]
mode = "quick"
seed = 0
device = "auto"

# %%
import pandas as pd
from IPython.display import Markdown, display

from fairkit import claims, monitoring, plots, runs, verdicts

run = runs.start()
run.banner()
pooled, found, missing = {}, [], []
for chapter, sweep in sorted({claim.source for claim in claims.CLAIMS}):
    params = claims.SWEEPS[sweep]
    try:
        table = runs.chapter_results(chapter, "comparisons", mode=mode, **params)
    except FileNotFoundError as err:
        missing.append(str(err))
        continue
    pooled[chapter, sweep] = verdicts.pool_seeds(table, by=verdicts.COMPARISON_KEYS)
    commits = ", ".join(f"`{c}`" for c in sorted(table["commit"].astype(str).unique()))
    setting = f" ({', '.join(f'{k}={v}' for k, v in params.items())})" if params else ""
    found.append(
        f"- {chapter}{setting}: {table['seed'].nunique()} seeds in {mode} mode, commit {commits}"
    )
summary = run.save_table(claims.summary(pooled), "summary")
Markdown("\n".join(found + [f"- Not found: {line}" for line in missing]))

# %% [markdown]
# ## The claims

# %%
if len(summary):
    display(
        run.save_figure(
            plots.claim_tally(summary, title=f"The papers' claims, {mode} mode, pooled over seeds"),
            "claims",
        )
    )
    columns = ["paper", "claim", "comparisons", *claims.TALLY, "seeds"]
    display(summary[[*columns, "verdict"]])

# %% [markdown]
# ## The numbers behind each verdict
# Each claim's comparisons: the mean paired difference over seeds and its 95% t interval.

# %%
for claim in claims.CLAIMS:
    if claim.source not in pooled:
        continue
    rows = pd.concat([claims.evidence_rows(e, pooled[claim.source]) for e in claim.evidence])
    display(Markdown(f"**{claim.claim}** ({claim.paper}; chapter {claim.chapter})"))
    display(
        rows.assign(difference=verdicts.with_intervals(rows))[
            ["setting", "a", "b", "group", "metric", "difference", "n_seeds", "verdict"]
        ].set_index(["setting", "a", "b", "group", "metric"])
    )

# %% [markdown]
# ## After deployment: the monitor
# {doc}`06_pipeline` watches each modality's best model on a stationary stream and on a
# drifting one, with a label-free estimate of each group's accuracy (NannyML's CBPE). Over the
# seeds of its sweep: how often the monitor alarms on the stationary stream (false alarms),
# in how many seeds it catches the drift and how soon, and how often its alarms agree with
# those that the true labels would raise.

# %%
try:
    monitored = runs.chapter_results("06_pipeline", "monitor_summary", mode=mode)
except FileNotFoundError as err:
    monitored = None
    print(f"Not found: {err}")
if monitored is not None:
    display(
        monitoring.pool_summaries(monitored).set_index(["modality", "stream", "group"]).round(3)
    )

# %%
run.finish()
