"""Chapter 7: every claim judged on the sweeps kept in ``results/``, and what a seed of each costs.

The summary reads each claim's kept sweep (``claims.SWEEPS``), pools it when its runs may be
pooled and words every claim (``judged_claims``); a sweep that may not be pooled leaves its
claims "not pooled", with the reason. Beside the verdicts: the scale each sweep rests on, and
the wall time a seed of every kept sweep took, so that a reader can size a rerun.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fairkit import claims
from fairkit.runs.kernel import REPO_ROOT, RESULTS, SECTION_SWITCH, pooling_key
from fairkit.runs.parameters import notebook_parameters
from fairkit.runs.provenance import ProvenanceError, judged_claims, scale
from fairkit.runs.sweep import chapter_results, complete_runs
from fairkit.studies import evidence


@dataclass(frozen=True)
class KeptSweeps:
    """What the summary pooled: every claim's row, and one line per sweep read."""

    summary: pd.DataFrame  # judged and not judged claims, with the scale of their sweep
    judged: pd.DataFrame  # the judged ones (``judged_claims``)
    sources: list[str]  # per sweep: its commit and scale, or why it was not pooled


def judge_kept_sweeps(mode: str, root: Path = RESULTS) -> KeptSweeps:
    """Pool each claim's kept sweep for a reader in ``mode`` and word every claim."""
    tables, lines, refused, scales = {}, [], {}, {}
    for chapter, sweep in sorted({claim.source for claim in claims.CLAIMS}):
        params = claims.SWEEPS[sweep]
        setting = f" ({', '.join(f'{k}={v}' for k, v in params.items())})" if params else ""
        try:
            tables[chapter, sweep] = {
                name: chapter_results(chapter, name, mode=mode, root=root, **params)
                for name in evidence.tables(chapter)
            }
        except (FileNotFoundError, ProvenanceError) as err:
            refused[chapter, sweep] = str(err)
            lines.append(f"- **{chapter}**{setting}: not pooled. {err}")
            continue
        kept = tables[chapter, sweep]["comparisons"]
        scales[chapter, sweep] = sweep_scale(root, chapter, kept, params)
        lines.append(f"- **{chapter}**{setting}: commit `{kept['commit'].iloc[0]}`; "
                     f"{scales[chapter, sweep]}.")  # fmt: skip
    judged = judged_claims(tables)
    summary = pd.concat([judged, claims.not_judged(refused)], ignore_index=True)
    summary["scale"] = [
        scales.get(key, "") for key in zip(summary["chapter"], summary["sweep"], strict=True)
    ]
    return KeptSweeps(summary, judged, lines)


def sweep_scale(root: Path, chapter: str, kept: pd.DataFrame, params: dict) -> str:
    """``scale`` of a kept sweep, naming the backbones that a sweep of ``backbones`` trained.

    ``scale`` reads the mode's backbone from a run's settings; a sweep over the ``backbones``
    parameter (``claims.SWEEPS``) trained those instead, at the mode's ``backbone_width`` (64:
    torchvision's), and its label must say so.
    """
    label = scale(root, chapter, kept)
    if not params.get("backbones"):
        return label
    record = json.loads(
        (Path(root) / chapter / kept["run_id"].iloc[0] / "provenance.json").read_text()
    )
    sizes = record.get("settings", {})
    swept = f"{' and '.join(params['backbones'])} at width {sizes.get('backbone_width')}"
    return label.replace(f", {sizes.get('backbone')},", f", {swept},", 1)


def seed_costs(root: Path = RESULTS) -> pd.DataFrame:
    """Wall minutes of every kept run, one row each, from its ``provenance.json``.

    ``setting`` names the parameters a run changed from its chapter's defaults, seed and
    device aside, and the sections it left out (``run_<section>=False``; empty: the defaults
    with every section). A sweep runs every section it does not leave out, so a reader's run
    of the same chapter and setting, which reads some sections from the sweep, takes at most
    this long on the same machine (``wall_time_s``: the kernel's time, without its start).
    """
    rows = []
    for notebook in sorted((REPO_ROOT / "notebooks").glob("*.py")):
        defaults = pooling_key(notebook_parameters(notebook))
        for folder in complete_runs(root, notebook.stem):
            params = json.loads((folder / "params.json").read_text())
            record = json.loads((folder / "provenance.json").read_text())
            changed = {
                k: v for k, v in pooling_key(params).items() if k != "mode" and v != defaults.get(k)
            } | {k: v for k, v in params.items() if k.startswith(SECTION_SWITCH) and v is False}
            rows.append(
                {
                    "chapter": notebook.stem,
                    "mode": record.get("mode"),
                    "setting": ", ".join(f"{k}={v}" for k, v in changed.items()),
                    "seed": params.get("seed"),
                    "minutes": record["wall_time_s"] / 60,
                    "device": record.get("device_name") or record.get("device"),
                }
            )
    return pd.DataFrame(rows)
