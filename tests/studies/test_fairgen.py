import numpy as np
import pandas as pd
import pytest

from fairkit.config import settings
from fairkit.fairness import report
from fairkit.studies import fairgen as study


def scores(n: int, seed: int, *, penalty: float) -> pd.DataFrame:
    """Predictions whose accuracy is lower for group M by ``penalty`` (0: no gap)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    g = rng.choice(["F", "M"], n)
    wrong = rng.random(n) < 0.1 + penalty * (g == "M")
    s = np.where(y == 1, 0.8, 0.2)
    s = np.where(wrong, 1 - s, s)
    return pd.DataFrame(
        {"y_true": y, "score_neg": 1 - s, "score_pos": s, "sex": g, "patient_id": np.arange(n)}
    )


def reports(penalties: dict[str, float]):
    return {
        name: report(
            scores(4000, k, penalty=p),
            groups=["sex"],
            positive="pos",
            thresholds=0.5,
            n_boot=100,
            seed=0,
        )  # fmt: skip
        for k, (name, p) in enumerate(penalties.items())
    }


def improvement_row(table: pd.DataFrame, a: str) -> pd.Series:
    rows = table[(table["metric"] == "improvement") & (table["a"] == a)]
    assert len(rows) == 1
    return rows.iloc[0]


def test_improvement_is_the_relative_reduction_of_real_onlys_accuracy_gap():
    reps = reports({study.REAL_ONLY: 0.3, "dpo": 0.1})
    row = improvement_row(study.comparisons(reps, attribute="sex", setting="cxr, test"), "dpo")
    base = reps[study.REAL_ONLY].value("gap_accuracy", attribute="sex")
    new = reps["dpo"].value("gap_accuracy", attribute="sex")
    assert row["value"] == pytest.approx(100 * (base - new) / base)
    assert row["lo"] > 0 and row["verdict"] == "better"


def test_improvement_is_undefined_when_real_only_has_no_gap_to_reduce():
    reps = reports({study.REAL_ONLY: 0.0, "dpo": 0.1})
    row = improvement_row(study.comparisons(reps, attribute="sex", setting="cxr, test"), "dpo")
    assert np.isnan(row["value"]) and row["verdict"] == study.UNDEFINED


@pytest.fixture(scope="module")
def scenario():
    return study.setting("skin", settings("smoke"), seed=0, device="cpu", minority_fraction=0.2)


def test_a_readers_sizes_replace_the_modes_and_reach_the_scenario():
    sizes = study.sized(settings("smoke"), n_train=300, n_test=150, generator_steps=7)
    assert (sizes.fairgen_train, sizes.fairgen_test, sizes.fairgen_diffusion_steps) == (300, 150, 7)
    assert study.sized(settings("smoke")) == settings("smoke")
    found = study.setting("mri", sizes, seed=0, device="cpu", minority_fraction=0.2)
    assert (len(found.train), len(found.test)) == (300, 150)
    assert found.train.images.shape[-1] == sizes.fairgen_size


def test_the_oracle_draws_the_plans_count_of_real_images_of_each_cell(scenario):
    plan = study.cells(scenario, rule="inverse")
    oracle = study.oracle(scenario, plan, seed=0)
    found = oracle.meta.groupby([scenario.attribute, study.FINDING]).size()
    for _, cell in plan[plan["synthesise"] > 0].iterrows():
        assert found[(cell[scenario.attribute], cell[study.FINDING])] == cell["synthesise"]
    assert found.sum() == plan["synthesise"].sum()
    assert not set(oracle.meta["patient_id"]) & set(scenario.train.meta["patient_id"])


def test_held_out_pairs_come_from_every_cell_and_leave_the_rest_to_align():
    pairs = pd.DataFrame(
        {"pair_id": range(40), "winner": range(40), "loser": range(40, 80),
         "sex": ["F"] * 20 + ["M"] * 20, "finding": ["a", "b"] * 20}
    )  # fmt: skip
    fit, held = study.held_out(pairs, fraction=0.25, seed=0)
    assert len(fit) + len(held) == 40 and not set(fit["pair_id"]) & set(held["pair_id"])
    assert (held.groupby(["sex", "finding"]).size() == 2).all()  # a quarter of each cell's 10


def test_an_invalid_judges_agreement_is_withheld():
    agreement = pd.DataFrame({"sex": ["F", "M"], "group_agreement": [0.9, 0.8],
                              "pathology_agreement": [0.7, 0.6], "n": [10, 10]})  # fmt: skip
    validity = pd.DataFrame({"component": ["pathology", "group"], "valid": [True, False]})
    shown = study.withheld(agreement, validity)
    assert shown["group_agreement"].isna().all()
    assert shown["pathology_agreement"].tolist() == [0.7, 0.6]
