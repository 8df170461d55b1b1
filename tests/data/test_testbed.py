"""The testbed keeps its positive controls: a change to a causal model that removes what the
claims are about fails here. One seed (0) each, at quick sizes or below; the kept five-seed
numbers are benchmarks/testbed.py's, and chapter 1 shows them. Thresholds sit below the gates
(one seed is noisier than five), but far above what the uncalibrated models gave: chest X-ray
women lost 0.012 AUROC at 10%, as much as men; the age judge found "old" in none of the exact
do(age=75) images."""

from dataclasses import replace

import pytest

from fairkit.config import settings
from fairkit.studies import testbed

QUICK = settings("quick")


def _values(table):
    return dict(zip(table["quantity"], table["value"], strict=True))


@pytest.mark.slow
@pytest.mark.parametrize("modality", ["skin", "cxr", "mri"])
def test_under_representation_hurts_the_minority_more_than_the_majority(modality):
    got = _values(testbed.representation(modality, QUICK, seed=0, device="cpu"))
    assert got["minority_loss"] >= 0.04, got
    assert got["excess_loss"] >= 0.03, got
    if modality != "mri":  # MRI's oracle does not pass its gate yet (see the chapter)
        assert got["oracle_gain"] >= 0.3 * got["minority_loss"], got


@pytest.mark.slow
@pytest.mark.parametrize("modality", ["skin", "cxr", "mri"])
def test_the_judges_tell_group_and_finding_on_real_images(modality):
    got = _values(testbed.instruments(modality, replace(QUICK, fairgen_size=32), seed=0,
                                      device="cpu"))  # fmt: skip
    assert got["group_judge"] >= 0.8, got
    if modality != "mri":  # MRI's disease overlaps ageing: its finding judge fails the gate
        assert got["pathology_judge"] >= 0.8, got


@pytest.mark.slow
def test_counterfactual_judges_find_the_exact_value_in_each_direction():
    smaller = replace(QUICK, n_train=1000, n_counterfactual=50)
    got = testbed.counterfactual_judges(smaller, seed=0, device="cpu")
    assert set(got["intervention"]) == {"do(skin type)", "do(sex)", "do(age)", "do(disease)"}
    assert len(got) == 8  # two directions each
    low = got[got["value"] < 0.7]  # the weakest, dark -> light (type IV -> III), was 0.71
    assert low.empty, low.to_string()


def test_gates_pass_only_with_the_interval_and_the_threshold():
    import pandas as pd

    pooled = pd.DataFrame(
        [
            {"modality": "m", "quantity": "minority_loss", "value": 0.08, "lo": 0.01, "hi": 0.15,
             "seeds": 5},
            {"modality": "n", "quantity": "minority_loss", "value": 0.08, "lo": -0.01,
             "hi": 0.17, "seeds": 5},
            {"modality": "m", "quantity": "group_judge", "value": 0.84, "lo": 0.8, "hi": 0.88,
             "seeds": 5},
        ]
    )  # fmt: skip
    gates = testbed.gates(pooled).set_index("modality")
    assert gates.loc["m", "passes"].tolist() == [True, False]  # loss passes, 0.84 < 0.85 fails
    assert not gates.loc["n", "passes"]  # mean above 0.05 but the interval reaches zero
