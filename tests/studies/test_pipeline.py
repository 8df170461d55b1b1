from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from fairkit.config import settings
from fairkit.experiment import Experiment
from fairkit.methods import ERM, MethodPredictions
from fairkit.studies import pipeline as study

PROBE = study.arm("linear_probe", "same_site")
TUNE = study.arm("fine_tune", "same_site")


def _pooled(rows, n_seeds=5):
    """Pooled comparison rows: (a, b, group, metric, value, lo, hi, verdict)."""
    table = pd.DataFrame(
        rows, columns=["a", "b", "group", "metric", "value", "lo", "hi", "verdict"]
    )
    return table.assign(setting="skin, test", comparison="pipeline", n_seeds=n_seeds)


def test_findings_call_a_narrower_gap_with_no_group_better_off_levelling_down():
    pooled = _pooled([
        (PROBE, study.SUPERVISED, "all", "gap_accuracy", -0.10, -0.15, -0.05, "better"),
        (PROBE, study.SUPERVISED, "dark", "accuracy", -0.02, -0.05, 0.01, "no detectable difference"),
        (PROBE, study.SUPERVISED, "light", "accuracy", -0.12, -0.15, -0.09, "worse"),
        (TUNE, PROBE, "all", "gap_accuracy", 0.08, 0.03, 0.12, "worse"),
    ])  # fmt: skip
    text = study.findings(pooled, modalities=["skin"], seeds=5, mode="quick")
    assert "is smaller by levelling down" in text
    assert "-0.100 [-0.150, -0.050]" in text
    assert "fine-tuning against the probe widens the gap: 0.080 [0.030, 0.120]" in text
    assert "was not measured" in text  # fine-tune vs supervised is absent
    lifted = pooled.assign(verdict=np.where(pooled["group"] == "dark", "better", pooled["verdict"]))
    assert "levelling down" not in study.findings(
        lifted, modalities=["skin"], seeds=5, mode="quick"
    )


def test_findings_give_no_verdict_under_five_seeds():
    pooled = _pooled([(PROBE, study.SUPERVISED, "all", "gap_accuracy", -0.1, -0.15, -0.05, "better")],
                     n_seeds=1)  # fmt: skip
    text = study.findings(pooled, modalities=["skin"], seeds=1, mode="quick")
    assert "inconclusive with 1 seed(s)" in text and "SSL fairer" not in text
    assert "run alone" in text


def test_the_stage_table_reads_each_stage_from_the_runs():
    pooled = _pooled([
        ("resample", study.SUPERVISED, "all", "gap_accuracy", -0.05, -0.08, -0.02, "better"),
        ("threshold", study.SUPERVISED, "all", "gap_accuracy", 0.01, -0.02, 0.04, "no detectable difference"),
        ("threshold", study.SUPERVISED, "all", "gap_auroc", 0.3, 0.2, 0.4, "worse"),
    ])  # fmt: skip
    sheets = pd.DataFrame({"modality": "skin", "attribute": "skin_group", "group": ["dark", "light"],
                           "n": [200, 1800], "share": [0.1, 0.9]})  # fmt: skip
    rates = pd.DataFrame({"modality": "skin", "stream": ["stationary", "prevalence shift"],
                          "group": "dark", "false_alarm_rate": [0.0, 0.05], "detected": [0.0, 0.4],
                          "realised_detected": [0.0, 1.0], "seeds": 5})  # fmt: skip
    table = study.stages(pooled, modalities=["skin", "cxr"], datasheets=sheets, monitored=rates)
    assert list(table["stage"]) == ["data", "mitigation", "post-processing", "monitoring"]
    assert table["what it buys"].iloc[0] == "dark: 10.0% of 2000 training images, documented"
    assert list(table["what it buys"].iloc[1:3]) == ["gap_accuracy -0.050 [-0.080, -0.020]",
                                                     "gap_accuracy 0.010 [-0.020, 0.040]"]  # fmt: skip
    assert list(table["verdict"].iloc[1:3]) == ["better", "no detectable difference"]
    assert "dark: alarms in 40% of seeds, labels flag 100%" in table["what it buys"].iloc[3]


@dataclass(frozen=True)
class _Scored(ERM):
    """A method whose validation AUROC peaks at lr 0.01 (no training)."""

    name: str = "scored"

    def __call__(self, scenario):
        rng = np.random.default_rng(0)
        y = rng.integers(0, 2, 200)
        noise = abs(np.log10(self.lr) + 2) * 3 + 0.1  # least noise at 1e-2
        score = 1 / (1 + np.exp(-(2 * y - 1) - noise * rng.normal(size=200)))
        val = pd.DataFrame({"y_true": y, "y_pred": (score > 0.5).astype(int),
                            "score_benign": 1 - score, "score_malignant": score,
                            "skin_group": np.repeat(["light", "dark"], 100)})  # fmt: skip
        return MethodPredictions(self.name, val, val)


def test_each_arm_is_tuned_on_its_own_grid_by_validation_auroc():
    scenario = Experiment("skin", settings("smoke"), seed=0, device="cpu").scenario("none")
    arms = {study.SUPERVISED: _Scored()}
    predictions, table = study.train_arms(scenario, arms, lrs=[0.001, 0.01, 0.1], probe_lrs=[1])
    assert table["overall"].idxmax() == 1 and len(table) == 3
    assert table.loc[1, "chosen_by"].startswith("overall")
    assert predictions[study.SUPERVISED].val.equals(_Scored(lr=0.01)(scenario).val)


def test_the_summary_claims_name_the_arms_this_study_trains():
    from fairkit import claims

    labels = set(study.arms())
    for claim in claims.CLAIMS:
        read = [claim.primary.rows, *claim.secondary, *(g.rows for g in claim.gates)]
        for rows in read:
            if rows.comparison == "pipeline":
                assert {rows.a, rows.b} <= labels


def test_the_cards_arm_is_refused_by_name_when_no_candidate_has_a_worst_group_auroc():
    val = pd.DataFrame(
        {"g": ["a", "a", "b", "b"], "y_true": [0, 1, 1, 1], "score_no": [0.8, 0.2, 0.5, 0.4],
         "score_yes": [0.2, 0.8, 0.5, 0.6]}
    )  # fmt: skip
    scenario = type("Stub", (), {"attribute": "g", "positive": "yes"})()
    one_class = {name: MethodPredictions(name, val, val) for name in ("x", "y")}
    with pytest.raises(ValueError, match=r"no candidate among \['x', 'y'\] has a validation"):
        study.best_arm(scenario, one_class, ["x", "y"])
