"""Each chapter's per-seed evidence for the claims: its comparisons, plus the rows its gates read.

A claim's endpoint and gates are rows in the form of the chapters' ``comparisons`` tables
(``verdicts.COMPARISON_KEYS`` with ``a_value``, ``b_value``, ``value`` and ``seed``). Most
are comparisons already; the rest come from other tables a chapter writes, turned into rows
here, so a kept sweep and a chapter's own run give the claims the same evidence:

- chapter 4 (``soundness``): learned effectiveness against the exact counterfactual on the
  same images (comparison "ceiling"), and the judge's hit rate on the exact ones ("instrument");
- chapter 5 (``preference_accuracy``, ``manipulation``): held-out preference accuracy of each
  aligned model against the unaligned one ("alignment"), and the manipulation checks of each
  model's synthetic images, the worst cell of each group ("manipulation").

Chapter 3 writes its gates' rows into its comparisons itself: the premise's positive control
("positive control") and the weights' manipulation check ("manipulation").
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TABLES = {  # the tables besides ``comparisons`` that a chapter's claims read
    "04_counterfactuals": ("soundness",),
    "05_fairgen": ("preference_accuracy", "manipulation"),
}
RUN_COLUMNS = ("seed", "run_id", "commit")  # what ``runs.collect`` adds; kept on every row


def tables(chapter: str) -> tuple[str, ...]:
    """The tables a chapter's claims read: ``comparisons`` and those of ``TABLES``."""
    return ("comparisons", *TABLES.get(chapter, ()))


def _carried(table: pd.DataFrame) -> list[str]:
    return [c for c in RUN_COLUMNS if c in table]


def ceiling_rows(soundness: pd.DataFrame) -> pd.DataFrame:
    """Learned vs exact counterfactual effectiveness per intervention and direction, per run.

    The exact counterfactual is the ceiling the same judge can reach on the same images, so
    the learned one is read against it, not against chance. Rows "instrument" carry the
    judge's hit rate on the exact counterfactuals alone (its validity in that direction).
    """
    keys = ["intervention", "direction", *_carried(soundness)]
    wide = soundness.pivot_table(index=keys, columns="metric", values="value", dropna=False)
    wide = wide.reset_index()
    learned = wide.get("effectiveness", pd.Series(np.nan, index=wide.index))
    exact = wide["effectiveness_exact"]
    common = {
        "setting": wide["intervention"],
        "group": wide["direction"],
        "metric": "effectiveness",
    }
    runs = {c: wide[c] for c in _carried(soundness)}
    ceiling = pd.DataFrame({"comparison": "ceiling", "a": "learned", "b": "exact", **common,
                            "a_value": learned, "b_value": exact, "value": learned - exact,
                            **runs})  # fmt: skip
    instrument = pd.DataFrame({"comparison": "instrument", "a": "exact", "b": "intended",
                               **common, "a_value": exact, "b_value": 1.0, "value": exact,
                               **runs})  # fmt: skip
    return pd.concat([ceiling, instrument], ignore_index=True)


def alignment_rows(preference_accuracy: pd.DataFrame) -> pd.DataFrame:
    """Held-out preference accuracy of each aligned model minus the unaligned one's, per group."""
    keys = ["modality", "group", *_carried(preference_accuracy)]
    wide = preference_accuracy.pivot_table(index=keys, columns="model", values="value")
    rows = []
    for model in [m for m in wide.columns if m != "unaligned"]:
        part = wide[[model, "unaligned"]].reset_index()
        rows.append(
            part.assign(comparison="alignment", setting=part["modality"] + ", held-out pairs",
                        a=model, b="unaligned", metric="preference_accuracy",
                        a_value=part[model], b_value=part["unaligned"],
                        value=part[model] - part["unaligned"])
            .drop(columns=["modality", model, "unaligned"])
        )  # fmt: skip
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def manipulation_rows(manipulation: pd.DataFrame) -> pd.DataFrame:
    """Per model and group, the worst of the group's cells on each manipulation check.

    ``group_agreement``: the lowest share of a cell's images in which the judges see the
    intended group; ``finding_shortfall``: the largest drop of the finding judge's agreement
    from real images of the cell to synthetic ones; ``realism_ratio``: the lowest ratio of
    the synthetic images' realism to real ones' (``fairgen.manipulation_checks``). A cell the
    judges could not grade (NaN) makes its group's value NaN, and the gate then fails; a check
    a sweep did not record (one made before it) gives no row, and its gate fails for want of one.
    """
    keys = ["modality", "model", "group", *_carried(manipulation)]
    worst = manipulation.groupby(keys, dropna=False).agg(
        **{metric: (metric, lambda v, f=pick: f(v, skipna=False)) for metric, (pick, _, _) in
           MANIPULATION_ROWS.items() if metric in manipulation}
    )  # fmt: skip
    long = worst.reset_index().melt(id_vars=keys, var_name="metric", value_name="value")
    b, ideal = ({m: row[k] for m, row in MANIPULATION_ROWS.items()} for k in (1, 2))
    return long.assign(
        comparison="manipulation", setting=long["modality"] + ", synthetic", a=long["model"],
        b=long["metric"].map(b), a_value=long["value"], b_value=long["metric"].map(ideal),
    ).drop(columns=["modality", "model"])  # fmt: skip


# Each manipulation check's worst cell (``pd.Series.min`` or ``max``), what it is compared with
# (``b``) and the value of a perfect generator.
MANIPULATION_ROWS = {
    "group_agreement": (pd.Series.min, "intended", 1.0),
    "finding_shortfall": (pd.Series.max, "real", 0.0),
    "realism_ratio": (pd.Series.min, "real", 1.0),
}


BUILDERS = {
    "soundness": ceiling_rows,
    "preference_accuracy": alignment_rows,
    "manipulation": manipulation_rows,
}


def rows(chapter: str, tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """A chapter's evidence: ``tables["comparisons"]`` plus the rows built from its other tables.

    ``tables`` holds the tables of one run or of a whole sweep (``runs.collect``: with
    ``seed``, ``run_id`` and ``commit`` columns). A missing table leaves its rows out, so the
    gates that read them are not measured (and fail).
    """
    extra = [BUILDERS[name](tables[name]) for name in TABLES.get(chapter, ()) if name in tables]
    return pd.concat([tables["comparisons"], *extra], ignore_index=True)
