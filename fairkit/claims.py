"""The seed papers' claims as pre-registered tests, and the one function that words their verdicts.

A claim is fixed before its sweep is read: one *primary endpoint* (a paired comparison pooled
over seeds; other rows are secondary, shown and not voted), the *smallest effect of interest*
that would matter, the *gates* that must pass for the test to mean anything (positive controls,
manipulation checks, instruments valid with margin) and the *family* within which Holm's
correction applies. ``judge`` reads a chapter's per-seed evidence rows (``studies.evidence``)
and gives one of five words (``WORDS``), or names levelling down; nothing is retyped from a run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fairkit.config import FAIRGEN_PAPER, MANIPULATION
from fairkit.verdicts import (
    ALPHA,
    MIN_SEEDS,
    NARROWING,
    fieller,
    higher_is_better,
    holm,
    interval,
    narrowing,
    pool_seeds,
    seeds_needed,
    t_interval,
    t_pvalue,
)

WORDS = ("reproduced", "contradicted", "no effect", "underpowered", "untestable here")
LEVELLING_DOWN = "levelling down"  # a narrower gap made by lowering the better-served group
VERDICTS = (*WORDS, LEVELLING_DOWN)
PREDICTIONS = ("better", "worse", "equal", "not worse")  # a against b; "equal": within ± the
# smallest effect; "not worse": a loses less than the smallest effect (non-inferiority)


@dataclass(frozen=True)
class Rows:
    """Which per-seed evidence rows an endpoint or gate reads (comparisons' columns)."""

    comparison: str
    setting: str  # the start of the setting's label, e.g. "age" for "age, small_cnn"
    a: str
    b: str
    metric: str
    group: str = "all"  # "*": every group, averaged within each seed
    size: float | None = None  # the paper's number for these rows, where it claims one

    def select(self, table: pd.DataFrame) -> pd.DataFrame:
        """The rows of ``table`` this selection names (keys compared as text)."""
        hit = (
            (table["comparison"] == self.comparison)
            & table["setting"].astype(str).str.startswith(self.setting)
            & (table["a"].astype(str) == self.a)
            & (table["b"].astype(str) == self.b)
            & (table["metric"] == self.metric)
        )
        return table[hit & ((table["group"].astype(str) == self.group) | (self.group == "*"))]

    def label(self, estimator: str = "difference") -> str:
        """How the book names the rows: ``a − b, group metric (setting)`` (``a / b`` a ratio)."""
        sign = "/" if estimator == "ratio" else "−"
        group = "every group" if self.group == "*" else self.group
        return f"{self.a} {sign} {self.b}, {group} {self.metric} ({self.setting})"


@dataclass(frozen=True)
class Estimate:
    """A pooled estimate over seeds: value, 95% interval, seeds, spread and the test's p."""

    value: float
    lo: float
    hi: float
    n: int
    sd: float  # seed-level spread, in the estimate's units (linearised for a ratio)
    p: float  # two-sided p-value against the endpoint's null

    def text(self, unit: str = "") -> str:
        """``value [lo, hi] (n seeds)``; an interval without bounds says so."""
        if self.n == 0 or not np.isfinite(self.value):
            return "not measured"
        said = interval(self.value, self.lo, self.hi, digits=1 if unit == "%" else 3, unit=unit)
        return f"{said} ({self.n} seeds)"


def _per_seed(rows: pd.DataFrame, column: str) -> pd.Series:
    """One number per seed (the mean where a seed has several rows)."""
    return rows.groupby("seed")[column].mean()


def estimate(rows: pd.DataFrame, *, estimator: str = "difference", null: float = 0.0) -> Estimate:
    """Pool the per-seed rows of one endpoint by its estimator.

    - ``difference``: the mean paired difference ``value`` with a seed-level t interval.
    - ``ratio``: Σ a_value / Σ b_value over seeds (ratio of means) with Fieller's interval.
    - ``improvement``: 100 (Σ b - Σ a) / Σ b, a gap's reduction in % (FairGen's metric) as a
      ratio of means over *all* seeds, with Fieller's interval; no seed is dropped.

    The p-value tests the endpoint against ``null``; for a ratio it is Fieller's own pivot,
    a t test of x - null·y, so p < 0.05 exactly when the interval excludes ``null``.
    """
    if estimator == "difference":
        values = _per_seed(rows, "value").to_numpy(float)
        value, lo, hi = t_interval(values)
        finite = values[np.isfinite(values)]
        sd = float(finite.std(ddof=1)) if len(finite) > 1 else np.nan
        return Estimate(value, lo, hi, len(finite), sd, t_pvalue(values, null=null))
    if estimator not in ("ratio", "improvement"):
        raise ValueError(
            f"unknown estimator {estimator!r}; expected difference, ratio or improvement"
        )
    a, b = _per_seed(rows, "a_value").to_numpy(float), _per_seed(rows, "b_value").to_numpy(float)
    x, y = (a, b) if estimator == "ratio" else (100 * (b - a), b)  # see pooled_improvement
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    value, lo, hi = fieller(x, y)
    if len(x) < 2 or not np.isfinite(value):
        return Estimate(value, lo, hi, len(x), np.nan, np.nan)
    sd = float(np.std(x - value * y, ddof=1) / abs(y.mean()))  # delta method
    return Estimate(value, lo, hi, len(x), sd, t_pvalue(x - null * y))


@dataclass(frozen=True)
class Endpoint:
    """A claim's endpoint: rows, what the claim predicts, and the smallest effect of interest.

    ``levelling`` names the per-group metric (same a, b and setting) that tells a gap narrowed
    by raising the worse-served group from one narrowed by lowering the better-served one.
    """

    rows: Rows
    predicts: str  # one of PREDICTIONS
    sesoi: float  # smallest effect of interest, in the endpoint's units (> 0)
    estimator: str = "difference"
    null: float = 0.0  # the value of "no effect" (1 for a ratio to a ceiling)
    levelling: str | None = None
    unit: str = ""

    def __post_init__(self):
        if self.predicts not in PREDICTIONS:
            raise ValueError(f"an endpoint predicts one of {PREDICTIONS}, not {self.predicts!r}")
        if not self.sesoi > 0:
            raise ValueError(f"the smallest effect of interest must be > 0, got {self.sesoi}")

    @property
    def higher_better(self) -> bool:
        """Whether a larger value of the endpoint favours a."""
        return self.estimator != "difference" or higher_is_better(self.rows.metric)


@dataclass(frozen=True)
class Gate:
    """A check that must pass before a claim is judged: its interval lies wholly past a bound."""

    name: str  # what it shows, in words ("the oracle closes part of the gap")
    rows: Rows
    above: bool  # True: the interval must lie above ``bound``; False: below it
    bound: float = 0.0
    estimator: str = "difference"

    def check(self, evidence: pd.DataFrame) -> tuple[bool, str]:
        """(passed, ``name: value [lo, hi] (needs > bound)``); unmeasured rows fail."""
        found = estimate(self.rows.select(evidence), estimator=self.estimator)
        side = ">" if self.above else "<"
        passed = found.n >= 2 and bool(
            found.lo > self.bound if self.above else found.hi < self.bound
        )
        return passed, f"{self.name}: {found.text()} (needs {side} {self.bound:g})"


@dataclass(frozen=True)
class Claim:
    """One published claim as a pre-registered test (see the module's docstring).

    ``sweep`` names a kept sweep other than the chapter's defaults (a key of ``SWEEPS``).
    """

    paper: str
    chapter: str
    claim: str
    family: str  # Holm's correction applies over the primary endpoints of one family
    primary: Endpoint
    secondary: tuple[Rows, ...] = ()
    gates: tuple[Gate, ...] = ()
    sweep: str = "defaults"

    @property
    def source(self) -> tuple[str, str]:
        """(chapter, sweep): the evidence the claim is judged on."""
        return self.chapter, self.sweep


SWEEPS = {  # each kept sweep's parameters off the chapter's defaults
    "defaults": {},
    "backbones": {"backbones": ["resnet18", "vgg11"]},  # SPARE's networks, at the study's size
}

SPARE = "Xu et al. 2026 (SPARE)"
SYNTHFAIR = "SynthFair 2025"
FAIRGEN = "FairGen 2026"
FAIRFM = "Queiroz et al. 2025 (fair foundation models review)"

# Smallest effects of interest, fixed before reading the sweeps:
# - F1, precision, recall, accuracy, AUROC of a group: 0.02, two points. Smaller changes are
#   below what a clinician would act on and below the spread of one 1,500-image test set.
# - A fairness gap (accuracy, equal opportunity, equalized odds): 0.02 absolute; at our
#   real-only gaps of 0.05-0.2 that is 10-40% of the gap, the scale of the papers' gains.
# - Learned counterfactual effectiveness against its exact ceiling: a ratio within 0.8-1.2, as
#   close to the exact counterfactual as a judge's own accuracy spread allows.
METRIC_SESOI = 0.02
CEILING_SESOI = 0.2
PROBE_MARGIN = 0.05  # SSL gate: the probe's AUROC at most 0.05 below supervised in each group
AGREEMENT = 0.8  # instrument gates: judges see the intended value in ≥ 80%
MINORITY = {"skin": "dark", "cxr": "F", "mri": "old"}  # each modality's under-served group


FLAT_WEIGHTS = 0.9  # SPARE's manipulation check: effective sample at most 0.9 of the images


def _spare_premise(setting: str) -> Gate:
    """Positive control: the under-representation lowers ERM's dark-skin F1 by more than SESOI.

    A harm smaller than the smallest effect of interest leaves no gain of that size to show.
    """
    return Gate("positive control: under-representation lowers ERM's dark-skin F1 here",
                Rows("positive control", setting, "erm", "erm, balanced", "f1", "dark"),
                above=False, bound=-METRIC_SESOI)  # fmt: skip


def _weighs(variant: str) -> Gate:
    """Manipulation check: the dark-skin model of ``variant`` does not weigh its images flat.

    Kish's effective sample size over the images (``studies.spare.weight_check``): flat
    weights (1) make the variant ERM on all images, and no comparison of weightings can differ.
    """
    return Gate(f"manipulation check: {variant}'s dark-skin weights are not flat",
                Rows("manipulation", "skin type", variant, "flat", "effective_size", "dark"),
                above=False, bound=FLAT_WEIGHTS, estimator="ratio")  # fmt: skip


def _weighing(*variants: str) -> tuple[Gate, ...]:
    """The gates of a comparison of weightings: the premise, and each variant weighs."""
    return (_spare_premise("skin type"), *(_weighs(v) for v in variants))


def _spare(claim: str, family: str, rows: Rows, predicts: str, *, secondary=(), levelling=None,
           sweep="defaults", gates=()):  # fmt: skip
    return Claim(SPARE, "03_spare", claim, family,
                 Endpoint(rows, predicts, METRIC_SESOI, levelling=levelling), secondary,
                 gates=gates, sweep=sweep)  # fmt: skip


def _fairgen_gates(modality: str) -> tuple[Gate, ...]:
    """Before FairGen is judged on a modality: the oracle works, DPO aligned, the images show it.

    The manipulation checks read the worst of the minority's cells (``fairgen.MANIPULATION``).
    """
    setting, group = f"{modality}, test", MINORITY[modality]
    synthetic = f"{modality}, synthetic"
    return (
        Gate("positive control: the oracle (real images of the same cells) narrows the gap",
             Rows("fairgen", setting, "oracle", "real only", "gap_accuracy"), above=False),
        Gate(f"manipulation check: DPO raises held-out preference accuracy for {group}",
             Rows("alignment", f"{modality}, held-out pairs", "dpo", "unaligned",
                  "preference_accuracy", group), above=True),
        Gate(f"manipulation check: judges see {group} in each cell of the synthetic {group} images",
             Rows("manipulation", synthetic, "dpo", "intended", "group_agreement", group),
             above=True, bound=MANIPULATION["group"]),
        Gate(f"manipulation check: judges see the finding in synthetic {group} images almost as "
             "in real ones",
             Rows("manipulation", synthetic, "dpo", "real", "finding_shortfall", group),
             above=False, bound=MANIPULATION["finding"]),
        Gate(f"manipulation check: judges find synthetic {group} images about as realistic as real "
             "ones",
             Rows("manipulation", synthetic, "dpo", "real", "realism_ratio", group),
             above=True, bound=MANIPULATION["realism"]),
    )  # fmt: skip


def _fairgen(modality: str, claim: str) -> Claim:
    """FairGen on one modality: dpo narrows real only's accuracy gap (primary: the gap's change).

    The source never defines its "improvement"; we read it as the relative reduction of the
    per-group accuracy gap and show it as a secondary row (a ratio of means over all seeds).
    The AUROC gap, which no threshold sets, stands beside the accuracy gap: an accuracy gap that
    narrows while the AUROC gap does not may be an operating point's doing.
    """
    setting = f"{modality}, test"
    gap = Rows("fairgen", setting, "dpo", "real only", "gap_accuracy")
    return Claim(
        FAIRGEN, "05_fairgen", claim, "FairGen",
        Endpoint(gap, "better", METRIC_SESOI, levelling="accuracy"),
        secondary=(Rows("fairgen", setting, "dpo", "real only", "improvement",
                        size=FAIRGEN_PAPER[modality]),
                   Rows("fairgen", setting, "dpo", "real only", "gap_auroc"),
                   Rows("fairgen", f"{modality}, external", "dpo", "real only", "gap_accuracy")),
        gates=_fairgen_gates(modality),
    )  # fmt: skip


def _fairgen_accuracy(modality: str) -> Claim:
    """FairGen keeps diagnostic accuracy: real + synthetic loses less than the smallest effect.

    The test set holds every group equally, so the groups' mean accuracy is its overall one.
    """
    return Claim(
        FAIRGEN, "05_fairgen",
        f"Real + synthetic training keeps a competitive overall accuracy ({modality})",
        "FairGen accuracy",
        Endpoint(Rows("fairgen", f"{modality}, test", "dpo", "real only", "mean_accuracy"),
                 "not worse", METRIC_SESOI),
        gates=_fairgen_gates(modality),
    )  # fmt: skip


def _synthfair(intervention: str, directions: tuple[str, str]) -> Claim:
    """SynthFair on one intervention: learned counterfactuals reach their exact ceiling."""
    return Claim(
        SYNTHFAIR, "04_counterfactuals",
        f"Learned counterfactuals are effective for {intervention}: an attribute classifier "
        "finds the intervened value as often as on the exact counterfactuals (Fig. 2)",
        "SynthFair",
        Endpoint(Rows("ceiling", intervention, "learned", "exact", "effectiveness", "*"),
                 "equal", CEILING_SESOI, estimator="ratio", null=1.0),
        secondary=tuple(Rows("ceiling", intervention, "learned", "exact", "effectiveness", d)
                        for d in directions),
        gates=tuple(Gate(f"instrument: the judge finds '{d}' on exact counterfactuals",
                         Rows("instrument", intervention, "exact", "intended", "effectiveness", d),
                         above=True, bound=AGREEMENT) for d in directions),
    )  # fmt: skip


def _ssl(modality: str) -> Claim:
    """Queiroz et al. on one modality: the SSL probe's accuracy gap is smaller than supervised's."""
    setting, probe = f"{modality}, test", "probe, same_site"
    groups = {"skin": ("dark", "light"), "cxr": ("F", "M"), "mri": ("old", "young")}[modality]
    return Claim(
        FAIRFM, "06_pipeline",
        f"Self-supervised pretraining is fairer than supervised training ({modality}): a smaller "
        "accuracy gap for the linear probe",
        "SSL fairer",
        Endpoint(Rows("pipeline", setting, probe, "supervised", "gap_accuracy"), "better",
                 METRIC_SESOI, levelling="accuracy"),
        secondary=(Rows("pipeline", setting, probe, "supervised", "gap_auroc"),
                   Rows("pipeline", setting, probe, "supervised", "equalized_odds"),
                   Rows("pipeline", setting, "fine-tune, same_site", "supervised", "gap_accuracy")),
        gates=tuple(Gate(f"the probe is a competent model: its {g} AUROC is near supervised's",
                         Rows("pipeline", setting, probe, "supervised", "auroc", g),
                         above=True, bound=-PROBE_MARGIN) for g in groups),
    )  # fmt: skip


def _fine_tune(modality: str) -> Claim:
    setting = f"{modality}, test"
    return Claim(
        FAIRFM, "06_pipeline",
        f"Fine-tuning narrows the gap against the linear probe of the same encoder ({modality})",
        "fine-tuning",
        Endpoint(Rows("pipeline", setting, "fine-tune, same_site", "probe, same_site",
                      "gap_accuracy"), "better", METRIC_SESOI, levelling="accuracy"),
        secondary=(Rows("pipeline", setting, "fine-tune, same_site", "probe, same_site",
                        "equalized_odds"),),
    )  # fmt: skip


_MITIGATION = ("resample", "reweight", "groupdro", "in_group", "threshold (EOdds)")
CLAIMS = (
    _spare("Higher F1 than the standard baseline (ERM) for both age groups (ISIC 2019); "
           "primary: the old group", "SPARE vs ERM",
           Rows("method", "age", "spare", "erm", "f1", "old"), "better",
           secondary=(Rows("method", "age", "spare", "erm", "f1", "young"),)),
    _spare("Smaller equal-opportunity and equalized-odds gaps than ERM across age groups",
           "SPARE vs ERM", Rows("method", "age", "spare", "erm", "equal_opportunity"), "better",
           secondary=(Rows("method", "age", "spare", "erm", "equalized_odds"),),
           levelling="recall"),
    *(_spare(f"Higher precision, recall and F1 for dark skin than {b} (Fitzpatrick17k); "
             "primary: dark-skin F1", "SPARE vs baselines",
             Rows("method", "skin type", "spare", b, "f1", "dark"), "better",
             secondary=tuple(Rows("method", "skin type", "spare", b, m, g)
                             for m in ("precision", "recall", "f1") for g in ("dark", "light")
                             if (m, g) != ("f1", "dark")),
             gates=(_spare_premise("skin type"),))
      for b in _MITIGATION),
    *(_spare(f"Both signals together beat {alone} alone (dark-skin F1)", "SPARE ablations",
             Rows("ablation", "skin type", alone, "spare", "f1", "dark"), "worse",
             secondary=(Rows("ablation", "skin type", alone, "spare", "f1", "light"),),
             gates=_weighing(alone, "spare"))
      for alone in ("similarity", "utility")),
    _spare("Similarity alone beats utility alone (dark-skin F1)", "SPARE ablations",
           Rows("ablation", "skin type", "similarity", "utility", "f1", "dark"), "better",
           secondary=(Rows("ablation", "skin type", "similarity", "utility", "f1", "light"),),
           gates=_weighing("similarity", "utility")),
    *(_spare(f"Continuous DeepFool-based weights beat {name} (dark-skin F1)", "SPARE ablations",
             Rows("ablation", "skin type", variant, "spare", "f1", "dark"), "worse",
             secondary=(Rows("ablation", "skin type", variant, "spare", "f1", "light"),),
             gates=_weighing(variant, "spare"))
      for variant, name in (("confidence", "confidence-based distances"),
                            ("binary", "binary selection"), ("group_level", "group-level weights"))),
    *(_spare(f"The gains hold with {name}: higher dark-skin F1 than ERM (Fitzpatrick17k)",
             "SPARE backbones", Rows("method", f"skin type, {backbone}", "spare", "erm", "f1",
                                     "dark"), "better",
             secondary=(Rows("method", f"skin type, {backbone}", "spare", "erm", "f1", "light"),),
             sweep="backbones", gates=(_spare_premise(f"skin type, {backbone}"),))
      for backbone, name in (("resnet18", "ResNet-18"), ("vgg11", "VGG-11"))),
    _spare("Independent group models do best; sharing stages costs performance (primary: all "
           "four stages shared, dark-skin F1)", "SPARE ablations",
           Rows("sharing", "skin type", "4", "0", "f1", "dark"), "worse",
           secondary=tuple(Rows("sharing", "skin type", k, "0", "f1", g)
                           for k in "1234" for g in ("dark", "light") if (k, g) != ("4", "dark")),
           gates=(_spare_premise("skin type"),)),
    *(_synthfair(i, d) for i, d in (("do(skin type)", ("dark → light", "light → dark")),
                                    ("do(sex)", ("F → M", "M → F")),
                                    ("do(age)", ("old → young", "young → old")),
                                    ("do(disease)", ("benign → malignant", "malignant → benign")))),
    _fairgen("skin", "Real + preference-aligned synthetic images of the rare cells narrow the "
             f"per-group accuracy gap over real-only training (skin; paper: {FAIRGEN_PAPER['skin']}%)"),
    _fairgen("cxr", "The same, on chest X-rays (paper: "
             f"{FAIRGEN_PAPER['cxr']}%)"),
    _fairgen("mri", f"The same, on brain MRI (paper: {FAIRGEN_PAPER['mri']}%)"),
    *(_fairgen_accuracy(m) for m in ("skin", "cxr", "mri")),
    *(_ssl(m) for m in ("skin", "cxr", "mri")),
    *(_fine_tune(m) for m in ("skin", "cxr", "mri")),
)  # fmt: skip


# --------------------------------------------------------------------------- judging


def levelled_down(endpoint: Endpoint, evidence: pd.DataFrame) -> bool:
    """Whether a narrower gap came from a group doing worse and none doing better.

    Each group's per-group metric (``Endpoint.levelling``, same a, b and setting) is pooled
    over seeds and worded as in the chapters (``verdicts.narrowing``), so the summary and a
    chapter's findings call the same thing levelling down.
    """
    if endpoint.levelling is None:
        return False
    rows = endpoint.rows
    per_group = evidence[
        (evidence["comparison"] == rows.comparison)
        & evidence["setting"].astype(str).str.startswith(rows.setting)
        & (evidence["a"].astype(str) == rows.a) & (evidence["b"].astype(str) == rows.b)
        & (evidence["metric"] == endpoint.levelling) & (evidence["group"].astype(str) != "all")
    ]  # fmt: skip
    if per_group["group"].nunique() < 2:
        return False
    pooled = pool_seeds(per_group, by=["group", "metric"])
    return narrowing(pooled["verdict"].tolist()) == NARROWING[1]


def word(
    endpoint: Endpoint, found: Estimate, *, p_adjusted: float, gates_passed: bool,
    levelled: bool = False,
) -> str:  # fmt: skip
    """The one place a claim's verdict is worded, from its pooled primary endpoint.

    - untestable here: a gate failed (or was not measured);
    - underpowered: fewer than ``MIN_SEEDS`` seeds, or none of the below;
    - for a directional claim: reproduced when the Holm-adjusted p < α on the predicted side
      (levelling down when the better-served group paid for it), contradicted on the other
      side, no effect when the interval lies inside null ± the smallest effect of interest;
    - for a claim of equality: reproduced when the interval lies inside null ± the smallest
      effect, contradicted when it lies wholly outside it;
    - for a claim of non-inferiority ("not worse"): reproduced when the interval's worse end
      loses less than the smallest effect, contradicted when even its better end loses more.
    """
    if not gates_passed:
        return WORDS[4]
    if found.n < MIN_SEEDS or not (np.isfinite(found.lo) and np.isfinite(found.hi)):
        return WORDS[3]
    lo, hi, null, margin = found.lo, found.hi, endpoint.null, endpoint.sesoi
    inside = null - margin < lo and hi < null + margin
    if endpoint.predicts == "equal":
        if inside:
            return WORDS[0]
        return WORDS[1] if lo > null + margin or hi < null - margin else WORDS[3]
    if endpoint.predicts == "not worse":
        sign = 1 if endpoint.higher_better else -1
        worse_end, better_end = sorted((sign * (lo - null), sign * (hi - null)))
        if worse_end > -margin:
            return WORDS[0]
        return WORDS[1] if better_end < -margin else WORDS[3]
    if p_adjusted < ALPHA:
        up = found.value > null
        favours_a = up == endpoint.higher_better
        if favours_a == (endpoint.predicts == "better"):
            return LEVELLING_DOWN if levelled else WORDS[0]
        return WORDS[1]
    return WORDS[2] if inside else WORDS[3]


def _what_it_would_take(endpoint: Endpoint, found: Estimate, verdict: str, failed, family: int):
    """For an open verdict: the gate to pass first, or the seeds the observed spread needs."""
    if verdict == WORDS[4]:
        return "first pass: " + "; ".join(failed)  # the gates' names; their numbers are beside
    if verdict != WORDS[3]:
        return ""
    if not np.isfinite(found.sd):
        return f"at least {MIN_SEEDS} seeds (has {found.n}: too few to estimate the spread)"
    n = max(MIN_SEEDS, seeds_needed(found.sd, endpoint.sesoi, alpha=ALPHA / max(1, family)))
    return f"about {n} seeds to resolve ±{endpoint.sesoi:g}{endpoint.unit} at sd {found.sd:.3g}"


def _beside_size(found: Estimate, size: float | None) -> str:
    if size is None or not np.isfinite(found.lo):
        return ""
    where = "above" if found.hi < size else "below" if found.lo > size else "inside"
    return f"paper {size:g}: {where} our interval"


def judge_all(evidence: dict[tuple[str, str], pd.DataFrame], claims=CLAIMS) -> pd.DataFrame:
    """Every claim whose source has evidence, judged: one row each, the summary's table.

    ``evidence`` maps ``Claim.source`` to per-seed evidence rows (``studies.evidence``).
    Holm's correction runs over the primary endpoints of each family that were judged.
    """
    judged = [c for c in claims if c.source in evidence]
    rows = []
    for claim in judged:
        table = evidence[claim.source]
        endpoint = claim.primary
        found = estimate(endpoint.rows.select(table), estimator=endpoint.estimator,
                         null=endpoint.null)  # fmt: skip
        checks = [gate.check(table) for gate in claim.gates]
        rows.append(
            {
                "paper": claim.paper,
                "chapter": claim.chapter,
                "sweep": claim.sweep,
                "family": claim.family,
                "claim": claim.claim,
                "primary": endpoint.rows.label(endpoint.estimator),
                "predicts": endpoint.predicts,
                "estimate": found,
                "endpoint": found.text(endpoint.unit),
                "sesoi": endpoint.sesoi,
                "null": endpoint.null,
                "direction": 1
                if (endpoint.predicts in ("better", "not worse")) == endpoint.higher_better
                else -1,
                "gates": "; ".join(("✓ " if ok else "✗ ") + said for ok, said in checks),
                "gates_passed": all(ok for ok, _ in checks),
                "failed": [
                    g.name for g, (ok, _) in zip(claim.gates, checks, strict=True) if not ok
                ],
                "levelled": levelled_down(endpoint, table),
                "paper size": _beside_size(found, endpoint.rows.size),
                "secondary": "; ".join(_secondary(r, table) for r in claim.secondary),
                "seeds": found.n,
            }
        )
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["p"] = [e.p for e in out["estimate"]]
    directional = out["predicts"].isin(("better", "worse"))
    out["p_holm"] = np.nan
    for _, idx in out[directional].groupby("family").groups.items():
        out.loc[idx, "p_holm"] = holm(out.loc[idx, "p"])
    out["verdict"] = [
        word(c.primary, r.estimate, p_adjusted=r.p_holm, gates_passed=r.gates_passed,
             levelled=r.levelled)
        for c, r in zip(judged, out.itertuples(), strict=True)
    ]  # fmt: skip
    out["what it would take"] = [
        _what_it_would_take(c.primary, r.estimate, r.verdict, r.failed,
                            int((out["family"] == r.family).sum()))
        for c, r in zip(judged, out.itertuples(), strict=True)
    ]  # fmt: skip
    out["value"] = [e.value for e in out["estimate"]]
    out["lo"] = [e.lo for e in out["estimate"]]
    out["hi"] = [e.hi for e in out["estimate"]]
    return out.drop(columns=["estimate", "failed"])


def _secondary(rows: Rows, evidence: pd.DataFrame) -> str:
    """A secondary row in words: its pooled estimate, and where the paper's number lies."""
    percent = rows.metric == "improvement"  # a gap's reduction: a ratio of means, in %
    found = estimate(rows.select(evidence), estimator="improvement" if percent else "difference")
    size = _beside_size(found, rows.size)
    return f"{rows.label()}: {found.text('%' if percent else '')}" + (f" ({size})" if size else "")


def of_chapter(chapter: str, evidence: pd.DataFrame, *, sweep: str = "defaults") -> pd.DataFrame:
    """The claims a chapter tests, judged on its own sweep: what its *What we found* shows."""
    mine = [c for c in CLAIMS if c.source == (chapter, sweep)]
    return judge_all({(chapter, sweep): evidence}, claims=mine)


SHOWN = ["claim", "primary", "endpoint", "verdict", "gates", "what it would take", "seeds"]


def not_judged(refused: dict[tuple[str, str], str], claims=CLAIMS) -> pd.DataFrame:
    """The claims whose sweep could not be pooled: untestable here, with the reason as a gate.

    ``refused`` maps a claim source (chapter, sweep) to why its runs were not pooled (no kept
    runs, a dirty tree, mixed code).
    """
    rows = [
        {
            "paper": c.paper, "chapter": c.chapter, "sweep": c.sweep, "family": c.family,
            "claim": c.claim, "primary": c.primary.rows.label(c.primary.estimator), "predicts": c.primary.predicts,
            "endpoint": "not measured", "gates": f"✗ provenance: {refused[c.source]}",
            "gates_passed": False, "secondary": "", "paper size": "", "seeds": 0,
            "p": np.nan, "p_holm": np.nan, "verdict": WORDS[4],
            "what it would take": "first pass: a sweep of one clean commit",
            "sweep status": "not pooled",
        }
        for c in claims
        if c.source in refused
    ]  # fmt: skip
    return pd.DataFrame(rows)
