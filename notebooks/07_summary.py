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
# Every claim of the seed papers that a chapter tests, as a test fixed before its sweep was
# read (`fairkit.claims`): one **primary endpoint** (a paired comparison on the same test
# patients, pooled over seeds with a seed-level 95% interval; other rows are secondary, shown
# and not voted), the **smallest effect of interest** that would matter, the **gates** that must
# pass for the test to mean anything (a positive control that shows the testbed can see the
# effect, manipulation checks that the method did what it claims, instruments valid with
# margin), and the **family** within which Holm's correction applies. One function words the
# verdict, in one of five words:
#
# - **reproduced**: every gate passes and the primary endpoint differs from no effect on the
#   predicted side after Holm within its family (for a claim of equality: its interval lies
#   inside ± the smallest effect of interest);
# - **contradicted**: gates pass and it differs on the other side (for equality: its interval
#   lies wholly outside the margin);
# - **no effect**: gates pass and the interval lies inside ± the smallest effect of interest;
# - **underpowered**: gates pass and none of the above; we say how many seeds the observed
#   seed-level spread would need to resolve the smallest effect of interest;
# - **untestable here**: a gate failed (named, with its number): a null from a test that could
#   not have seen the effect is not evidence.
#
# A fairness gain made by lowering the better-served group while the other does not rise is
# named **levelling down**, never reproduced. The numbers are the sweeps kept in `results/`
# (`make study`); a sweep is pooled only when its runs ran one chapter's code from a clean
# tree, and flagged **stale** when that code has changed since its commit. Every verdict
# carries its scale: ours is not the papers' (synthetic images at 16-32 px, small networks).

# %% tags=["parameters"]
mode = "quick"
seed = 0
device = "auto"

# %%
import pandas as pd
from IPython.display import Markdown, display

from fairkit import monitoring, plots, runs
from fairkit.runs import summary as kept_sweeps

run = runs.start()
run.banner()
kept = kept_sweeps.judge_kept_sweeps(mode)
summary, judged = run.save_table(kept.summary, "summary"), kept.judged
Markdown("The sweeps read:\n\n" + "\n".join(kept.sources))

# %% [markdown]
# A *stale* sweep ran code that has changed since: its verdicts are what that code found, shown
# so that a reader sees them, not findings about the code of this book. Each sweep's status:

# %%
with pd.option_context("display.max_colwidth", None):
    display(summary[["chapter", "sweep", "sweep status"]].drop_duplicates()
            .set_index(["chapter", "sweep"]))  # fmt: skip

# %% [markdown]
# ## The claims
# Each claim's primary endpoint, in units of its smallest effect of interest and signed so
# that + is what the claim predicts; the grey band is "no effect".

# %%
if len(judged):
    display(
        run.save_figure(
            plots.claim_forest(
                judged.assign(verdict=judged["verdict"].str.removesuffix(runs.STALE)),
                title=f"The papers' claims: primary endpoints, {mode} mode, pooled over seeds",
            ),
            "claims",
        )
    )
    counts = summary["verdict"].value_counts()  # every claim, judged or not
    display(Markdown(", ".join(f"**{v}**: {n}" for v, n in counts.items())))
    with pd.option_context("display.max_colwidth", None):
        display(summary[["paper", "claim", "primary", "endpoint", "verdict", "gates",
                         "what it would take", "scale"]].set_index(["paper", "claim"]))  # fmt: skip

# %% [markdown]
# ## The numbers behind each verdict
# For each claim: its primary endpoint (with the Holm-adjusted p within its family), where the
# paper's number lies, and its secondary rows, which are shown and not voted. FairGen's source
# does not define its "improvement"; we read it as the relative reduction of the per-group
# accuracy gap, estimated as a ratio of means over all seeds with Fieller's interval (no seed
# dropped), and keep it secondary to the gap's paired difference.

# %%
for r in summary.to_dict("records"):
    holm = (
        f"; Holm p = {r['p_holm']:.3f} in family *{r['family']}*" if pd.notna(r["p_holm"]) else ""
    )
    size = f" ({r['paper size']})" if r["paper size"] else ""
    display(Markdown(
        f"**{r['claim']}** ({r['paper']}; {r['chapter']}, {r['sweep']} sweep): "
        f"**{r['verdict']}**\n\n- primary, {r['primary']}: {r['endpoint']}{size}{holm}\n"
        f"- gates: {r['gates'] or 'none'}\n- secondary: {r['secondary'] or 'none'}"
    ))  # fmt: skip

# %% [markdown]
# ## What a seed costs
# The wall time of a seed of every sweep kept in `results/`, on the machine that ran it (a
# setting other than the chapter's defaults is named, and so is a section the sweep left out).
# A sweep runs every other section of its chapter, so a reader's run of the chapter on the
# same machine, which reads some sections from the sweep, takes at most this long. Multiply by the seeds that a claim's "what it would
# take" asks for to size a rerun.

# %%
costs = kept_sweeps.seed_costs()
if len(costs):
    display(
        costs.groupby(["chapter", "mode", "setting", "device"], dropna=False)["minutes"]
        .agg(seeds="count", fastest="min", median="median", slowest="max")
        .round(1)
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
except (FileNotFoundError, runs.ProvenanceError) as err:
    monitored = None
    print(f"Not found: {err}")
if monitored is not None:
    display(
        monitoring.pool_summaries(monitored).set_index(["modality", "stream", "group"]).round(3)
    )

# %%
run.finish()
