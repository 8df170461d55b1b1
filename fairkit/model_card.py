"""Model cards (Mitchell et al. 2019, "Model Cards for Model Reporting") for a run's models.

A card gathers what a reader needs before trusting one trained model: its intended use, the
training cohort's composition (``datasheet``), per-group metrics with 95% intervals on the test
set and the external site, the gaps whose interval excludes zero, and caveats. Its numbers are
the ``fairness.Report`` rows as they are (the rows of the chapter's ``metrics.csv``); only the
Markdown rounds them. ``write_card`` writes Markdown and JSON beside each other, atomically.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fairkit.data.cohort import Cohort
from fairkit.data.datasheet import datasheet
from fairkit.fairness import Report
from fairkit.io import write_atomic, write_json
from fairkit.verdicts import interval

METRICS = ("accuracy", "f1", "auroc")
GAP_METRICS = ("gap_accuracy", "gap_f1", "gap_auroc", "equalized_odds", "worst_auroc")
SPLITS = ("test", "external")  # the order of a card's splits; others follow
EXTERNAL = "external"
ALL = "all"  # the group of gap rows, as in the chapters' metrics.csv
COLUMNS = ["split", "attribute", "group", "metric", "value", "lo", "hi", "n"]
NO_GAPS = "none whose 95% interval excludes zero"
SMALL_GROUP = 30  # fewer evaluation images than this: a caveat on the group's intervals
RARE_SHARE = 0.1  # a smaller share of the training images: a caveat on the group
OUT_OF_SCOPE = (
    "Clinical decisions about individual patients; populations, sites, devices or groups that "
    "the training cohort does not hold; any use without a new audit of the deployment population."
)
SECTIONS = (
    "Model details",
    "Intended use",
    "Training data",
    "Metrics",
    "Known gaps",
    "External site",
    "Caveats and recommendations",
)


@dataclass(
    frozen=True, eq=False
)  # eq=False: a DataFrame field has no truth value; compare to_dict()
class ModelCard:
    """One trained model's card: what it is for, what it was trained on, how it does by group.

    Attributes:
        model: the model's name, e.g. "ssl (fine_tune, same_site)".
        modality: the imaging modality (``skin``, ``cxr``, ``mri`` or a real dataset's name).
        task: the binary task, e.g. "benign vs malignant".
        attribute: the audited protected attribute.
        intended_use: what the model is meant for.
        out_of_scope: uses it is not meant for.
        training: the training cohort: ``n`` images, the ``positive`` class and the datasheet's
            ``composition`` for the attribute (group, n, share, prevalence of the positive class).
        metrics: rows (split, attribute, group, metric, value, lo, hi, n): the Report's per-group
            rows and its gap rows (group "all", n NaN), numbers unrounded.
        known_gaps: the gaps whose 95% interval excludes zero (lo > 0): metric, split, value,
            lo, hi.
        provenance: what reproduces the run (seed, mode, commit, ...), as passed in.
        caveats: limitations a reader should weigh.
        threshold: the decision threshold of the test report (chosen on validation data); None
            when the method decided itself.
    """

    model: str
    modality: str
    task: str
    attribute: str
    intended_use: str
    out_of_scope: str
    training: dict
    metrics: pd.DataFrame = field(repr=False)
    known_gaps: list[dict]
    provenance: dict
    caveats: list[str]
    threshold: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The card as plain JSON values: metrics as row dicts, NaN as None, tuples as lists."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["metrics"] = self.metrics[COLUMNS].to_dict(orient="records")
        return _plain(data)

    def to_markdown(self) -> str:
        """The card as Markdown, one section per heading of Mitchell et al. (2019)."""
        parts = [f"# Model card: {self.model}", ""]
        parts += _section(SECTIONS[0], self._details())
        parts += _section(
            SECTIONS[1], [self.intended_use, "", f"Out of scope: {self.out_of_scope}"]
        )
        parts += _section(SECTIONS[2], self._training())
        metric_lines = [
            "Per group, `value [lo, hi]`: the estimate and its 95% bootstrap interval (patients "
            "resampled); gaps are differences between groups (max - min unless named otherwise)."
        ]
        for split in self._splits():
            metric_lines += ["", f"### {split}", "", *self._split_tables(split)]
        parts += _section(SECTIONS[3], metric_lines)
        gaps = [
            f"- {g['metric']} ({g['split']}): {interval(g['value'], g['lo'], g['hi'])}"
            for g in self.known_gaps
        ]
        parts += _section(SECTIONS[4], gaps or [f"{NO_GAPS.capitalize()}."])
        parts += _section(SECTIONS[5], self._external())
        parts += _section(SECTIONS[6], [f"- {c}" for c in self.caveats] or ["None recorded."])
        return "\n".join(parts).rstrip() + "\n"

    # ----------------------------------------------------------------------- Markdown parts

    def _splits(self) -> list[str]:
        return list(dict.fromkeys(self.metrics["split"]))

    def _details(self) -> list[str]:
        threshold = (
            "set by the method itself" if self.threshold is None else f"{self.threshold:.3f}"
        )
        lines = [
            f"- Model: {self.model}",
            f"- Modality: {self.modality}",
            f"- Task: {self.task}",
            f"- Audited attribute: {self.attribute}",
            f"- Decision threshold (chosen on validation data): {threshold}",
        ]
        scalars = {k: v for k, v in self.provenance.items() if not isinstance(v, Mapping | list)}
        return lines + [f"- {key}: {value}" for key, value in scalars.items()]

    def _training(self) -> list[str]:
        t = self.training
        rows = [
            [_escape(r["group"]), str(r["n"]), f"{r['share']:.3f}", _number(r["prevalence"])]
            for r in t["composition"]
        ]
        header = ["group", "n", "share", f"prevalence of {t['positive']}"]
        return [
            f"{t['n']} training images; composition by {self.attribute}:",
            "",
            *_table(header, rows),
        ]

    def _split_tables(self, split: str) -> list[str]:
        rows = self.metrics[self.metrics["split"] == split]
        per_group, gaps = rows[rows["group"] != ALL], rows[rows["group"] == ALL]
        metrics = list(dict.fromkeys(per_group["metric"]))
        body = []
        for group, cells in per_group.groupby("group", sort=False):
            by_metric = {r.metric: _cell(r.value, r.lo, r.hi) for r in cells.itertuples()}
            n = cells["n"].dropna()
            body.append([_escape(group), _count(n.iloc[0] if len(n) else None)])
            body[-1] += [by_metric.get(m, "") for m in metrics]
        lines = _table(["group", "n", *metrics], body)
        if len(gaps):
            gap_rows = [[r.metric, _cell(r.value, r.lo, r.hi)] for r in gaps.itertuples()]
            lines += ["", *_table(["gap or worst group", "value [95% interval]"], gap_rows)]
        return lines

    def _external(self) -> list[str]:
        splits = self._splits()
        if EXTERNAL not in splits:
            return ["No external-site result: this model's performance at another site is unknown."]
        rows = self.metrics[self.metrics["group"] != ALL]
        test = rows[rows["split"] == "test"].set_index(["group", "metric"])["value"]
        external = rows[rows["split"] == EXTERNAL].set_index(["group", "metric"])["value"]
        body = [
            [
                _escape(g),
                m,
                _number(test.get((g, m))),
                _number(v),
                _number(v - test.get((g, m), np.nan), sign=True),
            ]
            for (g, m), v in external.items()
        ]
        gaps = [g["metric"] for g in self.known_gaps if g["split"] == EXTERNAL]
        said = ", ".join(gaps) if gaps else NO_GAPS
        return [
            "The same model and threshold on images from a site it was not trained on. The change "
            "is external - test on different patients (unpaired), so it carries no interval; the "
            f"intervals are in the {EXTERNAL} table above. Gaps at the external site: {said}.",
            "",
            *_table(["group", "metric", "test", EXTERNAL, "change"], body),
        ]


# --------------------------------------------------------------------------- building a card


def model_card(
    name: str,
    *,
    reports: Mapping[str, Report],
    attribute: str,
    train: Cohort,
    positive: str,
    modality: str,
    intended_use: str,
    provenance: Mapping[str, Any],
    metrics: Sequence[str] = METRICS,
    gap_metrics: Sequence[str] = GAP_METRICS,
    out_of_scope: str = OUT_OF_SCOPE,
    caveats: Sequence[str] = (),
) -> ModelCard:
    """The card of model ``name`` from its reports per split and its training cohort.

    Args:
        name: the model's name (also the card's file name, made safe by ``slug``).
        reports: split name ("test", and "external" where there is one) -> that split's Report.
        attribute: the audited attribute; its rows are taken from every report.
        train: the training cohort, binary task (``Experiment.binary``), for the datasheet.
        positive: the positive class, one of ``train.classes``.
        modality: the imaging modality.
        intended_use: what the model is meant for.
        provenance: seed, mode, commit and the like (``run.provenance()``).
        metrics: per-group metrics taken from ``Report.by_group``.
        gap_metrics: rows taken from ``Report.gaps``; those that are gaps (not ``worst_*``) and
            whose interval excludes zero become known gaps.
        out_of_scope: uses the model is not meant for.
        caveats: caveats of the caller's own, put before those the card finds itself.

    Raises:
        ValueError: no "test" report, the attribute missing from a report or the training
            cohort, a positive class that is not one of ``train.classes``, a metric missing from
            a report, or more than one row per group and metric (a one-vs-rest report).
    """
    if "test" not in reports:
        raise ValueError(f"reports need a 'test' split; got splits {sorted(reports)}")
    if positive not in train.classes:
        raise ValueError(
            f"positive class {positive!r} is not a class of the training cohort {list(train.classes)}"
        )
    if attribute not in train.meta:
        raise ValueError(f"the training cohort has no column {attribute!r} (the audited attribute)")
    splits = sorted(reports, key=lambda s: (SPLITS.index(s) if s in SPLITS else len(SPLITS), s))
    table = pd.concat(
        [_rows(reports[s], s, attribute, metrics, gap_metrics) for s in splits], ignore_index=True
    )
    known = table[
        (table["group"] == ALL) & ~table["metric"].str.startswith("worst_") & (table["lo"] > 0)
    ]
    known_gaps = [
        {"metric": r.metric, "split": r.split, "value": r.value, "lo": r.lo, "hi": r.hi}
        for r in known.itertuples()
    ]
    training = _training(train, attribute, positive)
    classes = list(train.classes)
    task = " vs ".join(classes) if len(classes) == 2 else f"{positive} vs the rest"
    return ModelCard(
        model=name,
        modality=modality,
        task=task,
        attribute=attribute,
        intended_use=intended_use,
        out_of_scope=out_of_scope,
        training=training,
        metrics=table,
        known_gaps=known_gaps,
        provenance=dict(provenance),
        caveats=[*caveats, *_found_caveats(table, training)],
        threshold=reports["test"].threshold,
    )


def _rows(
    rep: Report, split: str, attribute: str, metrics: Sequence[str], gap_metrics: Sequence[str]
) -> pd.DataFrame:
    """One split's per-group rows of ``metrics`` and gap rows of ``gap_metrics``, checked."""
    found = sorted(set(rep.by_group["attribute"]))
    if attribute not in found or attribute not in set(rep.gaps["attribute"]):
        raise ValueError(f"the {split} report has no attribute {attribute!r}; it has {found}")
    by = rep.by_group[rep.by_group["attribute"] == attribute]
    gaps = rep.gaps[rep.gaps["attribute"] == attribute]
    for wanted, have, kind in ((metrics, by, "per-group"), (gap_metrics, gaps, "gap")):
        missing = [m for m in wanted if m not in set(have["metric"])]
        if missing:
            raise ValueError(
                f"the {split} report has no {kind} metric {missing} for {attribute!r}; it has "
                f"{sorted(set(have['metric']))}"
            )
    by = by[by["metric"].isin(metrics)]
    gaps = gaps[gaps["metric"].isin(gap_metrics)].assign(group=ALL, n=np.nan)
    rows = pd.concat([by, gaps], ignore_index=True).assign(split=split)
    repeated = rows.duplicated(["group", "metric"])
    if repeated.any():
        first = rows[repeated].iloc[0]
        raise ValueError(
            f"the {split} report has {int(repeated.sum()) + 1}+ rows for group {first['group']!r}, "
            f"metric {first['metric']!r}; a card expects one (a one-vs-rest report has a 'cls' "
            "column: report the binary task instead)"
        )
    rows["group"] = rows["group"].astype(str)
    for column in ("value", "lo", "hi", "n"):
        rows[column] = rows[column].astype(float)
    return rows[COLUMNS]


def _training(train: Cohort, attribute: str, positive: str) -> dict[str, Any]:
    """The training cohort's size and its datasheet composition for ``attribute``."""
    composition = datasheet(train, [attribute]).composition
    return {
        "n": len(train),
        "positive": positive,
        "composition": [
            {
                "group": str(r["group"]),
                "n": int(r["n"]),
                "share": float(r["share"]),
                "prevalence": float(r[f"prev_{positive}"]),
            }
            for _, r in composition.iterrows()
        ],
    }


def _found_caveats(table: pd.DataFrame, training: dict) -> list[str]:
    """What the numbers themselves warn of: rare or absent groups, small or undefined ones."""
    caveats = []
    trained = {r["group"]: r for r in training["composition"]}
    for r in training["composition"]:
        if r["share"] < RARE_SHARE:
            caveats.append(
                f"{r['group']} is {r['share']:.1%} of the training images ({r['n']}): the model "
                "has seen few of them."
            )
    per_group = table[table["group"] != ALL]
    for group in dict.fromkeys(per_group["group"]):
        if group not in trained:
            caveats.append(f"{group} has no training images: its results are extrapolation.")
    for (split, group), rows in per_group.groupby(["split", "group"], sort=False):
        n = rows["n"].dropna()
        if len(n) and n.iloc[0] < SMALL_GROUP:
            caveats.append(f"{group} has {int(n.iloc[0])} {split} images: its intervals are wide.")
        undefined = list(rows.loc[rows["value"].isna(), "metric"])
        if undefined:
            caveats.append(
                f"{', '.join(undefined)} of {group} on {split} is undefined (a group with one "
                "class only, or no predictions of one kind)."
            )
    if EXTERNAL not in set(table["split"]):
        caveats.append(
            "No external-site result: how the model transfers to another site is unknown."
        )
    caveats.append(
        "A gap whose 95% interval reaches zero is not shown to be absent: small groups give wide "
        "intervals. Re-audit on the deployment population before use."
    )
    return caveats


# --------------------------------------------------------------------------- files


def slug(name: str) -> str:
    """A safe file name from a model name: runs of other characters become one ``-``."""
    text = re.sub(r"[^A-Za-z0-9._]+", "-", name).strip("-.").lower()
    if not text:
        raise ValueError(f"model name {name!r} has no letter or digit to name its card file by")
    return text


def write_card(card: ModelCard, folder: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``<folder>/<slug>.md`` and ``<slug>.json``, each atomically, both or neither.

    Both texts are made before anything is written; if the Markdown fails after the JSON was
    written, the JSON is put back as it was (removed if it was new).

    Returns:
        The paths of the Markdown and the JSON file.
    """
    folder = Path(folder)
    md_path, json_path = folder / f"{slug(card.model)}.md", folder / f"{slug(card.model)}.json"
    markdown, data = card.to_markdown(), card.to_dict()
    before = json_path.read_bytes() if json_path.exists() else None
    write_json(json_path, data)
    try:
        write_atomic(md_path, lambda tmp: tmp.write_text(markdown))
    except BaseException:
        if before is None:
            json_path.unlink(missing_ok=True)
        else:
            write_atomic(json_path, lambda tmp: tmp.write_bytes(before))
        raise
    return md_path, json_path


def read_card(path: str | os.PathLike) -> dict[str, Any]:
    """A card's JSON as written by ``write_card``; anything else is refused.

    Raises:
        ValueError: the file is not a JSON object with every field of a card, or its metrics
            are not rows with the card's columns.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not JSON: {error}") from error
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds a JSON {type(data).__name__}; a model card is an object")
    missing = [f.name for f in fields(ModelCard) if f.name not in data]
    if missing:
        raise ValueError(f"{path} is not a model card: missing keys {', '.join(missing)}")
    rows = data["metrics"]
    bad = [c for c in COLUMNS if not all(isinstance(r, dict) and c in r for r in rows)]
    if not isinstance(rows, list) or bad:
        raise ValueError(f"{path}: metrics must be rows with keys {COLUMNS}; missing {bad}")
    return data


def card_metrics(card: ModelCard | Mapping[str, Any]) -> pd.DataFrame:
    """The card's metric rows (split, attribute, group, metric, value, lo, hi, n), NaN for null."""
    if isinstance(card, ModelCard):
        return card.metrics[COLUMNS].reset_index(drop=True)
    table = pd.DataFrame(list(card["metrics"]), columns=COLUMNS)
    for column in ("value", "lo", "hi", "n"):
        table[column] = pd.to_numeric(table[column], errors="raise").astype(float)
    return table


# --------------------------------------------------------------------------- helpers


def _plain(value: Any) -> Any:
    """``value`` as JSON's own types, so that writing and reading it back gives it again."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset | np.ndarray):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool | int | str):
        return value
    if value is pd.NA or value is pd.NaT:
        return None
    return str(value)  # a path, a date: as write_json would write it


def _section(title: str, lines: list[str]) -> list[str]:
    return [f"## {title}", "", *lines, ""]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table (by hand: ``tabulate`` is no declared dependency)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _escape(text: Any) -> str:
    return str(text).replace("|", "\\|")


def _cell(value: float, lo: float, hi: float) -> str:
    """``value [lo, hi]`` (verdicts.interval); "undefined" for NaN, no interval where it is NaN."""
    if not np.isfinite(value):
        return "undefined"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{value:.3f}"
    return interval(value, lo, hi)


def _number(value: float | None, *, sign: bool = False) -> str:
    if value is None or not np.isfinite(value):
        return "undefined"
    return f"{value:+.3f}" if sign else f"{value:.3f}"


def _count(value: float | None) -> str:
    return "" if value is None or not np.isfinite(value) else str(int(value))
