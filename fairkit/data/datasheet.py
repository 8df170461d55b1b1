"""Datasheets of a Cohort: composition, prevalence by group and by intersection, taxonomy."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import pandas as pd

from fairkit.data.cohort import Cohort
from fairkit.data.scm import SCM


@dataclass
class Datasheet:
    """What a reader should know about a cohort before training on it."""

    composition: pd.DataFrame
    intersections: pd.DataFrame
    taxonomy: pd.DataFrame | None


def prevalence(cohort: Cohort, by: list[str]) -> pd.DataFrame:
    """Count, share of the cohort and prevalence of every diagnosis per group of ``by``."""
    missing = [c for c in by if c not in cohort.meta]
    if missing:
        raise KeyError(f"cohort has no column {missing}; columns: {list(cohort.meta.columns)}")
    meta = cohort.meta.assign(diagnosis=pd.Categorical.from_codes(cohort.labels, cohort.classes))
    counts = meta.groupby(by, observed=True).size().rename("n")
    rates = pd.crosstab([meta[c] for c in by], meta["diagnosis"], normalize="index", dropna=False)
    table = pd.concat(
        [counts, counts.div(len(meta)).rename("share"), rates.add_prefix("prev_")], axis=1
    )
    return table.reset_index()


def taxonomy(scm: SCM) -> pd.DataFrame:
    """Every variable of a causal model with its kind (patient, external, ...) and parents."""
    return pd.DataFrame(
        [
            {
                "variable": m.name,
                "kind": m.kind,
                "parents": ", ".join(m.parents) or "-",
                "values": ", ".join(map(str, m.values)) if m.values else "continuous",
            }
            for m in scm.mechanisms
        ]
    )


def datasheet(cohort: Cohort, attributes: list[str], scm: SCM | None = None) -> Datasheet:
    """Composition per attribute, prevalence per pair of attributes, and the covariate taxonomy."""
    composition = pd.concat(
        [
            prevalence(cohort, [a]).rename(columns={a: "group"}).assign(attribute=a)
            for a in attributes
        ],
        ignore_index=True,
    )
    pairs = [
        prevalence(cohort, list(pair)).assign(intersection=" x ".join(pair))
        for pair in combinations(attributes, 2)
    ]
    intersections = pd.concat(pairs, ignore_index=True) if pairs else pd.DataFrame()
    columns = ["attribute", "group", "n", "share"]
    composition = composition[columns + [c for c in composition if c.startswith("prev_")]]
    return Datasheet(composition, intersections, taxonomy(scm) if scm is not None else None)
