"""Claims are pre-registered tests, worded in five words by one function, never from a point estimate."""

import numpy as np
import pandas as pd
import pytest

from fairkit import claims, runs
from fairkit.claims import Claim, Endpoint, Gate, Rows
from fairkit.studies import evidence

GAP = Rows("method", "skin type", "new", "old", "gap_accuracy")
CONTROL = Rows("control", "skin type", "oracle", "old", "gap_accuracy")


def seeds(rows: Rows, values, *, a_value=np.nan, b_value=np.nan) -> pd.DataFrame:
    """Per-seed evidence rows of one comparison, one value per seed."""
    return pd.DataFrame({"comparison": rows.comparison, "setting": rows.setting, "a": rows.a,
                         "b": rows.b, "group": rows.group, "metric": rows.metric,
                         "value": values, "lo": np.nan, "hi": np.nan,
                         "a_value": a_value, "b_value": b_value,
                         "seed": range(len(values))})  # fmt: skip


def claim(*, family="toy", gates=(), levelling=None, text="a toy claim") -> Claim:
    return Claim("paper", "03_spare", text, family,
                 Endpoint(GAP, "better", 0.02, levelling=levelling), gates=gates)  # fmt: skip


PASSING = seeds(CONTROL, [-0.05, -0.06, -0.04, -0.05, -0.055])  # the oracle narrows the gap
WITH_GATE = Gate("the oracle narrows the gap", CONTROL, above=False)


def verdict_of(values, *, gate_rows=PASSING, gates=(WITH_GATE,), extra=None) -> pd.Series:
    table = pd.concat([seeds(GAP, values), gate_rows, *([] if extra is None else [extra])])
    return claims.judge_all({("03_spare", "defaults"): table}, claims=[claim(gates=gates)]).iloc[0]


@pytest.mark.parametrize(
    ("values", "word"),
    [
        ([-0.05, -0.06, -0.04, -0.05, -0.055], "reproduced"),  # the gap narrows: predicted
        ([0.05, 0.06, 0.04, 0.05, 0.055], "contradicted"),
        ([0.002, -0.003, 0.001, 0.0, -0.001], "no effect"),  # inside ± 0.02
        ([0.1, -0.08, 0.05, -0.04, 0.02], "underpowered"),
        ([-0.05, -0.06, -0.04], "underpowered"),  # fewer than five seeds
    ],
)
def test_each_word_follows_from_the_primary_endpoint_once_the_gates_pass(values, word):
    row = verdict_of(values)
    assert row["verdict"] == word
    assert row["gates"].startswith("✓ the oracle narrows the gap: -0.051")


def test_underpowered_says_how_many_seeds_the_observed_spread_needs():
    row = verdict_of([0.1, -0.08, 0.05, -0.04, 0.02])
    assert (
        row["what it would take"].startswith("about ")
        and "seeds to resolve ±0.02" in row["what it would take"]
    )


def test_a_failed_gate_makes_a_significant_primary_endpoint_untestable_here_and_names_it():
    failing = seeds(CONTROL, [0.01, -0.02, 0.02, 0.0, -0.01])
    row = verdict_of([-0.05, -0.06, -0.04, -0.05, -0.055], gate_rows=failing)
    assert row["verdict"] == "untestable here"
    assert row["gates"].startswith("✗ the oracle narrows the gap: 0.000 [")
    assert row["what it would take"] == "first pass: the oracle narrows the gap"


def test_a_gate_that_no_seed_measured_fails():
    row = verdict_of([-0.05, -0.06, -0.04, -0.05, -0.055], gate_rows=PASSING.iloc[:0])
    assert row["verdict"] == "untestable here" and "not measured" in row["gates"]


def _group(rows: Rows, group: str) -> Rows:
    return Rows(rows.comparison, rows.setting, rows.a, rows.b, rows.metric, group)


@pytest.mark.parametrize(("dark", "word"), [([0.0, 0.01, -0.01, 0.0, 0.005], "levelling down"),
                                            ([0.03, 0.04, 0.02, 0.03, 0.035], "reproduced")])  # fmt: skip
def test_a_gap_narrowed_by_lowering_the_better_served_group_is_named_levelling_down(dark, word):
    accuracy = Rows("method", "skin type", "new", "old", "accuracy")
    per_group = pd.concat([
        seeds(_group(accuracy, "light"), [-0.06, -0.05, -0.07, -0.06, -0.05], b_value=0.9),
        seeds(_group(accuracy, "dark"), dark, b_value=0.7),
    ])  # fmt: skip
    table = pd.concat([seeds(GAP, [-0.05, -0.06, -0.04, -0.05, -0.055]), per_group])
    judged = claims.judge_all({("03_spare", "defaults"): table},
                              claims=[claim(levelling="accuracy")])  # fmt: skip
    assert judged["verdict"].item() == word


def test_holm_within_a_family_turns_a_lone_hit_into_underpowered():
    hit = [-0.03, -0.01, -0.04, -0.005, -0.035]  # p about 0.03 on its own
    alone = claims.judge_all({("03_spare", "defaults"): seeds(GAP, hit)}, claims=[claim()])
    assert alone["verdict"].item() == "reproduced" and 0.01 < alone["p"].item() < 0.05
    others = [Rows("method", "skin type", f"other{k}", "old", "gap_accuracy") for k in range(2)]
    family = [claim(text="the hit"),
              *(Claim("paper", "03_spare", f"null {k}", "toy", Endpoint(r, "better", 0.02))
                for k, r in enumerate(others))]  # fmt: skip
    table = pd.concat(
        [seeds(GAP, hit), *(seeds(r, [0.05, -0.05, 0.02, -0.03, 0.0]) for r in others)]
    )
    judged = claims.judge_all({("03_spare", "defaults"): table}, claims=family).set_index("claim")
    assert judged.loc["the hit", "p_holm"] == pytest.approx(3 * alone["p"].item())
    assert judged.loc["the hit", "verdict"] == "underpowered"
    other_family = [
        family[0],
        *(Claim(c.paper, c.chapter, c.claim, "another", c.primary) for c in family[1:]),
    ]
    apart = claims.judge_all({("03_spare", "defaults"): table}, claims=other_family)
    assert apart.set_index("claim").loc["the hit", "verdict"] == "reproduced"


def test_a_claim_of_equality_is_reproduced_inside_its_margin_and_contradicted_outside():
    ceiling = Rows("ceiling", "do(sex)", "learned", "exact", "effectiveness", "*")
    equal = Claim("paper", "04_counterfactuals", "as good as exact", "toy",
                  Endpoint(ceiling, "equal", 0.2, estimator="ratio", null=1.0))  # fmt: skip

    def judged(learned):
        rows = seeds(ceiling, [np.nan] * 5, a_value=learned, b_value=[0.9, 0.92, 0.88, 0.91, 0.9])
        return claims.judge_all({("04_counterfactuals", "defaults"): rows}, claims=[equal]).iloc[0]

    assert judged([0.88, 0.9, 0.87, 0.9, 0.89])["verdict"] == "reproduced"
    low = judged([0.3, 0.35, 0.28, 0.33, 0.31])
    assert low["verdict"] == "contradicted" and low["value"] == pytest.approx(1.57 / 4.51)


def test_a_claim_of_non_inferiority_is_reproduced_when_a_loses_less_than_its_margin():
    overall = Rows("fairgen", "skin, test", "dpo", "real only", "mean_accuracy")
    kept = Claim("paper", "05_fairgen", "keeps accuracy", "toy",
                 Endpoint(overall, "not worse", 0.02))  # fmt: skip

    def verdict(values):
        rows = seeds(overall, values)
        return claims.judge_all({("05_fairgen", "defaults"): rows}, claims=[kept]).iloc[0]

    assert verdict([0.05, 0.06, 0.04, 0.05, 0.055])["verdict"] == "reproduced"  # better: kept
    assert verdict([-0.005, 0.0, -0.004, 0.002, -0.001])["verdict"] == "reproduced"
    assert verdict([-0.06, -0.05, -0.07, -0.06, -0.055])["verdict"] == "contradicted"
    assert verdict([-0.03, 0.01, -0.05, 0.02, -0.01])["verdict"] == "underpowered"
    assert np.isnan(
        verdict([-0.03, 0.01, -0.05, 0.02, -0.01])["p_holm"]
    )  # no Holm: not directional


def test_the_registered_claims_are_complete_tests():
    texts = [c.claim for c in claims.CLAIMS]
    assert len(texts) == len(set(texts))
    assert set(claims.SWEEPS) >= {c.sweep for c in claims.CLAIMS}
    for c in claims.CLAIMS:
        assert c.primary.sesoi > 0 and c.family
        if c.paper == claims.FAIRGEN:  # the positive control comes first
            assert c.gates[0].rows.a == "oracle" and "positive control" in c.gates[0].name
        if c.paper == claims.SPARE and c.primary.rows.setting.startswith("skin type"):
            assert c.gates[0].rows.comparison == "positive control"  # the harm is there to undo
            assert c.gates[0].rows.setting == c.primary.rows.setting
        if c.primary.rows.comparison == "ablation":  # each compared weighting must weigh
            checked = {g.rows.a for g in c.gates if g.rows.comparison == "manipulation"}
            assert checked == {c.primary.rows.a, c.primary.rows.b}, c.claim


def _kept(chapter: str, sweep: str) -> pd.DataFrame:
    """The evidence of a kept sweep, as a quick reader's run pools it (``config.swept_mode``)."""
    tables = {t: runs.chapter_results(chapter, t, mode="quick", **claims.SWEEPS[sweep])
              for t in evidence.tables(chapter)}  # fmt: skip
    return evidence.rows(chapter, tables)


def test_todays_kept_sweeps_judge_a_claim_only_when_every_gate_passes():
    sources = {("04_counterfactuals", "defaults")}  # chapter 5 keeps no sweep of today's search
    judged = claims.judge_all({s: _kept(*s) for s in sources})
    assert "partly" not in set(judged["verdict"]) and set(judged["verdict"]) <= set(claims.VERDICTS)
    for row in judged.itertuples():
        assert (row.verdict == "untestable here") == ("✗" in row.gates), row.claim
    # The calibrated judges (chapter 1's control (d)) pass their gates for age and disease now:
    # those claims are judged; before the calibration their judges failed and they were not.
    synthfair = judged[judged["paper"] == claims.SYNTHFAIR].set_index("claim")
    judged_now = [c for c, v in synthfair["verdict"].items() if v != "untestable here"]
    assert any("do(age)" in c for c in judged_now) and any("do(disease)" in c for c in judged_now)


def test_fairgens_improvement_is_secondary_and_says_where_the_papers_number_lies():
    mri = next(c for c in claims.CLAIMS if c.paper == claims.FAIRGEN and "MRI" in c.claim)
    gain = mri.secondary[0]
    assert mri.primary.rows.metric == "gap_accuracy" and gain.metric == "improvement"
    rows = seeds(gain, [np.nan] * 5, a_value=[0.09, 0.1, 0.08, 0.095, 0.09], b_value=0.1)
    assert "(paper 35.2: above our interval)" in claims._secondary(gain, rows)
    near = seeds(gain, [np.nan] * 5, a_value=[0.06, 0.07, 0.065, 0.066, 0.064], b_value=0.1)
    assert "(paper 35.2: inside our interval)" in claims._secondary(gain, near)


def test_evidence_rows_read_the_worst_cell_of_a_group_and_an_ungraded_cell_fails_it():
    checks = pd.DataFrame({"modality": "skin", "model": "dpo", "group": ["dark", "dark", "light"],
                           "finding": ["benign", "malignant", "benign"],
                           "group_agreement": [0.95, 0.88, np.nan],
                           "finding_shortfall": [0.02, 0.07, 0.0],
                           "realism_ratio": [0.6, 0.9, 0.8], "seed": 0})  # fmt: skip
    rows = evidence.manipulation_rows(checks).set_index(["group", "metric"])
    assert rows.loc[("dark", "group_agreement"), "value"] == pytest.approx(0.88)
    assert rows.loc[("dark", "finding_shortfall"), "value"] == pytest.approx(0.07)
    assert rows.loc[("dark", "realism_ratio"), ["value", "b", "b_value"]].tolist() == [
        0.6,
        "real",
        1.0,
    ]
    older = evidence.manipulation_rows(checks.drop(columns="realism_ratio"))  # a sweep before it
    assert set(older["metric"]) == {"group_agreement", "finding_shortfall"}
    assert np.isnan(rows.loc[("light", "group_agreement"), "value"])
    assert rows.loc[("dark", "group_agreement"), ["comparison", "setting", "a", "b"]].tolist() == [
        "manipulation", "skin, synthetic", "dpo", "intended"]  # fmt: skip
    gates = {
        g.rows.metric: g
        for g in claims._fairgen_gates("skin")
        if g.rows.comparison == "manipulation"
    }
    for worst, passes in ((0.88, True), (0.80, False)):
        seeds_ = [
            checks.assign(seed=k, group_agreement=[0.95, worst + k / 1000, 0.9]) for k in range(5)
        ]
        five = pd.concat([evidence.manipulation_rows(c) for c in seeds_])
        assert gates["group_agreement"].check(five)[0] == passes
    accuracy = pd.DataFrame({"modality": "mri", "model": ["unaligned", "dpo"], "group": "old",
                             "value": [0.50, 0.56], "seed": 3})  # fmt: skip
    aligned = evidence.alignment_rows(accuracy)
    assert aligned["value"].item() == pytest.approx(0.06) and aligned["seed"].item() == 3


def test_synthfair_claims_name_the_directions_chapter_4_grades():
    """Each SynthFair claim's gates read the direction labels chapter 4 writes (judged attribute)."""
    from fairkit import counterfactual as cf
    from fairkit.data import synth

    cohort = synth.generate("skin", 64, seed=0, image_size=16)
    for name, do in cf.skin_interventions(cohort.meta).items():
        attribute = cf.JUDGED[name]
        exact = synth.counterfactual(cohort, do)
        written = set(cf.direction(cohort.meta[attribute], exact.meta[attribute]))
        claim = next(c for c in claims.CLAIMS if c.chapter == "04_counterfactuals"
                     and name in c.claim)  # fmt: skip
        named = {gate.rows.group for gate in claim.gates}
        assert named <= written and len(named) == 2, (name, named, written)


def test_spares_manipulation_check_passes_weights_that_depart_from_flat_and_fails_flat_ones():
    gate = next(g for c in claims.CLAIMS for g in c.gates if g.rows.a == "spare"
                and g.rows.comparison == "manipulation")  # fmt: skip

    def seeds(share):
        return pd.DataFrame(
            {"comparison": "manipulation", "setting": "skin type, small_cnn", "a": "spare",
             "b": "flat", "metric": "effective_size", "group": "dark", "seed": range(5),
             "a_value": [1600 * (share + 0.01 * k) for k in range(5)], "b_value": 1600.0}
        )  # fmt: skip

    assert gate.check(seeds(0.6))[0] and not gate.check(seeds(0.97))[0]
    assert not gate.check(seeds(0.6).assign(a_value=np.nan))[0]  # unmeasured fails
