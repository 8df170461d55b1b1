"""Claims are judged from pooled comparison rows, never from point estimates."""

import pandas as pd
import pytest

from fairkit import claims

ROW = {"comparison": "ablation", "setting": "skin type", "b": "spare", "group": "dark",
       "metric": "f1", "value": -0.05, "lo": -0.08, "hi": -0.02, "n_seeds": 5}  # fmt: skip


@pytest.mark.parametrize(
    ("found", "word"),
    [
        (["worse", "worse"], "reproduced"),
        (["worse", "no detectable difference"], "partly"),
        (["no detectable difference", "better"], "not reproduced"),
        (["worse", "inconclusive"], "inconclusive"),
        ([], "inconclusive"),
    ],
)
def test_judgement_counts_only_rows_with_the_predicted_verdict(found, word):
    assert claims.judgement(found, ["worse"] * len(found)) == word


def test_judge_reads_the_claims_rows_and_tallies_them():
    pooled = pd.DataFrame(
        [
            {**ROW, "a": "similarity", "verdict": "worse"},
            {**ROW, "a": "utility", "verdict": "better"},
            {**ROW, "a": "binary", "verdict": "worse"},  # another claim's row
        ]
    )
    claim = next(c for c in claims.CLAIMS if "similarity alone" in c.claim)
    row = claims.judge(claim, pooled)
    assert row["comparisons"] == 2 and row["as predicted"] == 1 and row["opposite"] == 1
    assert row["verdict"] == "partly" and row["seeds"] == 5
    assert "-0.050 [-0.080, -0.020]" in row["ours"]


def test_rows_no_seed_measured_are_counted_apart_and_left_out_of_the_judgement():
    pooled = pd.DataFrame(
        [
            {**ROW, "a": "similarity", "verdict": "worse"},
            {**ROW, "a": "utility", "verdict": "inconclusive", "value": float("nan"),
             "lo": float("nan"), "hi": float("nan"), "n_seeds": 0},
        ]
    )  # fmt: skip
    claim = next(c for c in claims.CLAIMS if "similarity alone" in c.claim)
    row = claims.judge(claim, pooled)
    assert row["comparisons"] == 2 and row[claims.UNMEASURED] == 1 and row["inconclusive"] == 0
    assert row["verdict"] == "reproduced" and row["seeds"] == 5
    assert "not measured in any seed" in row["ours"]


def test_a_claim_on_another_sweep_is_judged_on_that_sweeps_rows_only():
    larger = next(c for c in claims.CLAIMS if c.sweep == "larger")
    row = {**ROW, "comparison": "fairgen", "setting": "skin, test", "a": "dpo", "b": "real only",
           "group": "all", "metric": "improvement", "value": 90.0, "lo": 80.0, "hi": 100.0}  # fmt: skip
    pooled = {
        (larger.chapter, "defaults"): pd.DataFrame(
            [{**row, "verdict": "no detectable difference"}]
        ),
        larger.source: pd.DataFrame([{**row, "verdict": "better"}]),
    }
    table = claims.summary(pooled).set_index("claim")
    assert table.loc[larger.claim, "verdict"] == "reproduced"
    quick = next(c for c in claims.CLAIMS if c.source == (larger.chapter, "defaults"))
    assert table.loc[quick.claim, "verdict"] == "not reproduced"  # skin, the defaults' row
    assert set(claims.SWEEPS) >= {c.sweep for c in claims.CLAIMS}


def test_a_claimed_size_outside_our_interval_is_reproduced_in_direction_only():
    mri = next(c for c in claims.CLAIMS if c.claim.endswith("by 35.2% on brain MRI"))
    row = {**ROW, "comparison": "fairgen", "setting": "mri, test", "a": "dpo", "b": "real only",
           "group": "all", "metric": "improvement", "verdict": "better"}  # fmt: skip
    judged = {
        size: claims.judge(mri, pd.DataFrame([{**row, "value": v, "lo": lo, "hi": hi}]))
        for size, (v, lo, hi) in {
            "small": (5.6, 3.1, 8.0),
            "the paper's": (30.0, 20.0, 40.0),
        }.items()
    }
    assert judged["small"]["verdict"] == "partly" and judged["small"]["as predicted"] == 1
    assert "(paper 35.2: above our interval)" in judged["small"]["ours"]
    assert judged["the paper's"]["verdict"] == "reproduced"
    assert "(paper 35.2: inside our interval)" in judged["the paper's"]["ours"]
