"""Smoke runs: every chapter of _toc.yml executes in mode="smoke", every section on, through the
users' runner."""

import re

import nbformat
import numpy as np
import pandas as pd
import pytest

from fairkit import claims, runs
from fairkit.model_card import card_metrics, read_card
from fairkit.runs.sweep import every_section
from fairkit.studies import evidence

from .conftest import ROOT


@pytest.mark.slow
@pytest.mark.parametrize("chapter", runs.toc_chapters(ROOT))
def test_smoke_chapter_runs(chapter, tmp_path):
    notebook = ROOT / "notebooks" / f"{chapter}.py"
    every = every_section(notebook, {"mode": "smoke"})  # the sections quick mode leaves out too
    run_dir = runs.run_notebook(notebook, every, runs_root=tmp_path, from_cli=True)
    assert (run_dir / "provenance.json").exists()
    # A figure saved by a cell must also be shown on the page, not only written to disk.
    notebook = nbformat.read(run_dir / "notebook.ipynb", as_version=4)
    shown = sum(
        "image/png" in output.get("data", {})
        for cell in notebook.cells
        for output in cell.get("outputs", [])
    )
    assert shown >= len(list(run_dir.glob("*.png")))
    _every_claim_finds_its_rows(chapter, run_dir)
    if chapter == "06_pipeline":
        _cards_hold_the_numbers_of_metrics_csv(run_dir)


def _every_claim_finds_its_rows(chapter, run_dir):
    """Each claim on this chapter's default sweep finds the rows of its endpoint and gates."""
    mine = [c for c in claims.CLAIMS if c.source == (chapter, "defaults")]
    if not mine:
        return
    tables = {t: pd.read_csv(run_dir / f"{t}.csv").assign(seed=0) for t in evidence.tables(chapter)}
    rows = evidence.rows(chapter, tables)
    for claim in mine:
        for selection in (claim.primary.rows, *(gate.rows for gate in claim.gates)):
            assert len(selection.select(rows)), f"{claim.claim}: no rows {selection}"
        for gate in claim.gates:  # a ratio reads the two arms' own values
            if gate.estimator != "difference":
                both = gate.rows.select(rows)[["a_value", "b_value"]].to_numpy(float)
                assert np.isfinite(both).all(), f"{claim.claim}: {gate.name} is not measured"


def _cards_hold_the_numbers_of_metrics_csv(run_dir):
    """Each model card of the run has exactly the rows of its model in the run's metrics.csv."""
    metrics = pd.read_csv(run_dir / "metrics.csv")
    cards = sorted((run_dir / "cards").rglob("*.json"))
    assert len(cards) == metrics.groupby(["modality", "method"]).ngroups
    key = ["split", "group", "metric"]
    for path in cards:
        card = read_card(path)
        name = card["model"].split(": ", 1)[1]
        mine = metrics[(metrics["modality"] == card["modality"]) & (metrics["method"] == name)]
        both = mine.merge(card_metrics(card), on=key, suffixes=("", "_card"), validate="1:1")
        assert len(both) == len(mine) == len(card_metrics(card)), path.name
        for column in ("value", "lo", "hi"):
            np.testing.assert_allclose(both[column], both[f"{column}_card"], rtol=0, atol=1e-12)


def test_every_notebook_is_in_the_toc():
    notebooks = sorted(p.stem for p in (ROOT / "notebooks").glob("*.py"))
    assert notebooks == sorted(runs.toc_chapters(ROOT))


def test_the_reliability_page_names_tests_that_exist():
    page = (ROOT / "book" / "reliability.md").read_text()
    named = set(re.findall(r"`([\w/]+\.py)::(test_\w+)`", page))
    assert len(named) >= 20
    missing = [f"{path}::{name}" for path, name in sorted(named)
               if f"def {name}(" not in (ROOT / "tests" / path).read_text()]  # fmt: skip
    assert missing == []
