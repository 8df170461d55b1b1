"""The seed papers' claims as data, and how a claim is judged from the pooled comparisons.

A claim names the pooled comparison rows (``verdicts.pool_seeds`` over a chapter's
``comparisons`` tables in ``results/``) that would show it, and the verdict each row should
have if the claim holds. ``judge`` reads those rows; nothing here is retyped from a run.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from fairkit.config import FAIRGEN_LARGER, FAIRGEN_PAPER
from fairkit.verdicts import INCONCLUSIVE, MIN_SEEDS, VERDICTS, interval

JUDGEMENTS = ("reproduced", "partly", "not reproduced", "inconclusive")
TALLY = ("as predicted", "opposite", "no detectable difference", "inconclusive", "not measured")
UNMEASURED = "not measured"  # no seed has the number: its instrument is invalid in every seed


@dataclass(frozen=True)
class Evidence:
    """Pooled comparison rows that bear on a claim, and the verdict the claim predicts."""

    comparison: str
    setting: str  # the start of the setting's label, e.g. "age" for "age, small_cnn"
    a: tuple
    b: tuple
    metrics: tuple[str, ...]
    expected: str  # "better" or "worse": a's difference with b if the claim holds
    size: float | None = None  # the paper's number, where it claims one (e.g. 35.2 (%))


@dataclass(frozen=True)
class Claim:
    """One published claim: the paper, the chapter that tests it, and its evidence.

    ``sweep`` names a kept sweep other than the chapter's defaults (a key of ``SWEEPS``).
    """

    paper: str
    chapter: str
    claim: str
    evidence: tuple[Evidence, ...]
    sweep: str = "defaults"

    @property
    def source(self) -> tuple[str, str]:
        """(chapter, sweep): the pooled results the claim is judged on."""
        return self.chapter, self.sweep


SWEEPS = {"defaults": {}, "larger": FAIRGEN_LARGER}  # each sweep's parameters off the defaults


SPARE = "Xu et al. 2026 (SPARE)"
SYNTHFAIR = "SynthFair 2025"
FAIRGEN = "FairGen 2026"
FAIRFM = "Queiroz et al. 2025 (fair foundation models review)"
_GAPS = ("gap_accuracy", "equalized_odds")


def _fairgen_gap(modality: str) -> Evidence:
    """FairGen's claim on one modality: dpo shrinks real only's accuracy gap, by the paper's %."""
    return Evidence("fairgen", f"{modality}, test", ("dpo",), ("real only",), ("improvement",),
                    "better", size=FAIRGEN_PAPER[modality])  # fmt: skip


_SSL = ("probe, same_site", "fine-tune, same_site")  # studies.pipeline.arm labels
_BASELINES = ("erm", "resample", "reweight", "groupdro", "in_group", "threshold (EOdds)")
CLAIMS = (
    Claim(
        SPARE,
        "03_spare",
        "Higher F1 than the standard baseline (ERM) for both age groups (ISIC 2019)",
        (Evidence("method", "age", ("spare",), ("erm",), ("f1",), "better"),),
    ),
    Claim(
        SPARE,
        "03_spare",
        "Smaller equal-opportunity and equalized-odds gaps than ERM across age groups",
        (
            Evidence(
                "method",
                "age",
                ("spare",),
                ("erm",),
                ("equal_opportunity", "equalized_odds"),
                "better",
            ),
        ),
    ),
    Claim(
        SPARE,
        "03_spare",
        "Higher precision, recall and F1 for light and dark skin than bias-mitigation baselines "
        "(Fitzpatrick17k)",
        (
            Evidence(
                "method",
                "skin type",
                ("spare",),
                _BASELINES,
                ("precision", "recall", "f1"),
                "better",
            ),
        ),  # fmt: skip
    ),
    Claim(
        SPARE,
        "03_spare",
        "Both signals together beat similarity alone and utility alone",
        (
            Evidence(
                "ablation", "skin type", ("similarity", "utility"), ("spare",), ("f1",), "worse"
            ),
        ),  # fmt: skip
    ),
    Claim(
        SPARE,
        "03_spare",
        "Continuous DeepFool-based weights beat confidence-based distances, binary selection "
        "and group-level weights",
        (
            Evidence(
                "ablation",
                "skin type",
                ("confidence", "binary", "group_level"),
                ("spare",),
                ("f1",),
                "worse",
            ),
        ),  # fmt: skip
    ),
    Claim(
        SPARE,
        "03_spare",
        "Independent group models do best; sharing more stages costs performance",
        (Evidence("sharing", "skin type", ("1", "2", "3", "4"), ("0",), ("f1",), "worse"),),
    ),
    Claim(
        SYNTHFAIR,
        "04_counterfactuals",
        "Learned counterfactuals are effective: an attribute classifier finds the intervened "
        "value (above chance) for every intervention (Fig. 2)",
        (Evidence("soundness", "do(", ("learned",), ("chance",), ("effectiveness",), "better"),),
    ),
    Claim(
        FAIRGEN,
        "05_fairgen",
        "Real + preference-aligned synthetic images of the rare cells shrink the per-group "
        "accuracy gap over real-only training: by 95.9% on skin (skin type)",
        (_fairgen_gap("skin"),),
    ),
    Claim(
        FAIRGEN,
        "05_fairgen",
        f"The same, on skin at the chapter's larger CPU setting ({FAIRGEN_LARGER['n_train']:,} "
        f"training images, generators trained {FAIRGEN_LARGER['generator_steps']:,} steps)",
        (_fairgen_gap("skin"),),
        sweep="larger",
    ),
    Claim(
        FAIRGEN,
        "05_fairgen",
        "Real + preference-aligned synthetic images of the rare cells shrink the per-group "
        "accuracy gap over real-only training: by 80.0% on chest X-rays",
        (_fairgen_gap("cxr"),),
    ),
    Claim(
        FAIRGEN,
        "05_fairgen",
        "Real + preference-aligned synthetic images of the rare cells shrink the per-group "
        "accuracy gap over real-only training: by 35.2% on brain MRI",
        (_fairgen_gap("mri"),),
    ),
    Claim(
        FAIRFM,
        "06_pipeline",
        "Self-supervised pretraining is fairer than supervised training: smaller accuracy and "
        "equalized-odds gaps (linear probe and fine-tuned, each modality's test set)",
        tuple(
            Evidence("pipeline", f"{m}, test", _SSL, ("supervised",), _GAPS, "better")
            for m in ("skin", "cxr", "mri")
        ),
    ),
    Claim(
        FAIRFM,
        "06_pipeline",
        "Fine-tuning aligns a pretrained model with its target and narrows the gap: fine-tuned "
        "against the linear probe of the same encoder",
        tuple(
            Evidence("pipeline", f"{m}, test", _SSL[1:], _SSL[:1], _GAPS, "better")
            for m in ("skin", "cxr", "mri")
        ),
    ),
)


def evidence_rows(evidence: Evidence, pooled: pd.DataFrame) -> pd.DataFrame:
    """The pooled rows an evidence entry selects (``a``/``b`` compared as text)."""
    return pooled[
        (pooled["comparison"] == evidence.comparison)
        & pooled["setting"].astype(str).str.startswith(evidence.setting)
        & pooled["a"].astype(str).isin(evidence.a)
        & pooled["b"].astype(str).isin(evidence.b)
        & pooled["metric"].isin(evidence.metrics)
    ]


def judgement(found: list[str], expected: list[str]) -> str:
    """Reproduced (every row as predicted), partly (some), not reproduced (none), inconclusive.

    Inconclusive when a row lacks ``MIN_SEEDS`` seeds or there are no rows. A row with the
    opposite verdict counts against the claim; "no detectable difference" counts as not shown.
    """
    if not found or INCONCLUSIVE in found:
        return JUDGEMENTS[3]
    hits = sum(f == e for f, e in zip(found, expected, strict=True))
    if hits == len(found):
        return JUDGEMENTS[0]
    return JUDGEMENTS[1] if hits else JUDGEMENTS[2]


def judge(claim: Claim, pooled: pd.DataFrame) -> dict:
    """One row of the summary: the claim, our pooled numbers, the tally and the judgement.

    A row that no seed measured (``n_seeds`` 0: e.g. its judge was at chance in every seed) is
    counted as not measured and left out of the judgement, which rests on the measured rows.
    A claim of a size (``Evidence.size``) whose rows go the predicted way but whose intervals
    exclude the paper's number is reproduced in direction only: "partly".
    """
    found, expected, numbers, seeds, unmeasured, off_size = [], [], [], [], 0, 0
    for evidence in claim.evidence:
        rows = evidence_rows(evidence, pooled)
        measured = rows[rows["n_seeds"] > 0]
        unmeasured += len(rows) - len(measured)
        seeds += list(measured["n_seeds"])
        found += list(measured["verdict"])
        expected += [evidence.expected] * len(measured)
        numbers += [
            f"{r.a} − {r.b}, {r.group} {r.metric}: "
            + (interval(r.value, r.lo, r.hi) if r.n_seeds else f"{UNMEASURED} in any seed")
            + _beside_size(r, evidence.size)
            for r in rows.itertuples()
        ]
        if evidence.size is not None:
            hit = measured["verdict"] == evidence.expected
            outside = (measured["lo"] > evidence.size) | (measured["hi"] < evidence.size)
            off_size += int((hit & outside).sum())
    predicted = sum(f == e for f, e in zip(found, expected, strict=True))
    verdict = judgement(found, expected)
    return {
        "paper": claim.paper,
        "chapter": claim.chapter,
        "sweep": claim.sweep,
        "claim": claim.claim,
        "ours": "; ".join(numbers),
        "comparisons": len(found) + unmeasured,
        "as predicted": predicted,
        "opposite": sum(f in VERDICTS[:2] for f in found) - predicted,
        "no detectable difference": found.count(VERDICTS[2]),
        "inconclusive": found.count(INCONCLUSIVE),
        UNMEASURED: unmeasured,
        "seeds": min(seeds, default=0),
        "verdict": JUDGEMENTS[1] if verdict == JUDGEMENTS[0] and off_size else verdict,
    }


def _beside_size(row, size: float | None) -> str:
    """Where the paper's number lies against a measured row's interval ("" without one)."""
    if size is None or not row.n_seeds:
        return ""
    where = "above" if row.hi < size else "below" if row.lo > size else "inside"
    return f" (paper {size:g}: {where} our interval)"


def summary(pooled: dict[tuple[str, str], pd.DataFrame], claims=CLAIMS) -> pd.DataFrame:
    """Every claim whose source (``Claim.source``) has pooled results, judged (``judge``).

    ``MIN_SEEDS`` applies.
    """
    rows = [judge(claim, pooled[claim.source]) for claim in claims if claim.source in pooled]
    return pd.DataFrame(rows).assign(min_seeds=MIN_SEEDS)
