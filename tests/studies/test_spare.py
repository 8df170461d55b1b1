import pandas as pd
import pytest

from fairkit import verdicts
from fairkit.config import settings
from fairkit.data import synth
from fairkit.experiment import Experiment
from fairkit.methods import Spare
from fairkit.studies import spare as study


@pytest.fixture(scope="module")
def skin():
    cohort = synth.generate("skin", 160, seed=3, image_size=16)
    return cohort.binarize(["melanoma", "bcc"], names=("benign", "malignant"))


@pytest.fixture(scope="module")
def scenario():
    experiment = Experiment("skin", settings("smoke"), 0, "cpu", attribute="skin_group")
    return experiment.scenario("under", 0.25)


def test_mixing_subset_keeps_the_group_and_adds_a_share_of_others(skin):
    sub = study.mixing_subset(skin, attribute="skin_group", group="dark", ratio=0.5, seed=0)
    n_dark = (skin.meta["skin_group"] == "dark").sum()
    assert (sub.meta["skin_group"] == "dark").sum() == n_dark
    assert (sub.meta["skin_group"] != "dark").sum() == min(
        round(0.5 * n_dark), (skin.meta["skin_group"] != "dark").sum()
    )


def test_mixing_curves_pool_point_by_point_across_seeds():
    rows = [{"seed": seed, "group": "dark", "metric": "f1", "ratio": ratio, "value": value,
             "lo": value - 0.1, "hi": value + 0.1}
            for seed, top in enumerate((4.0, 3.99, 4.0, 3.99, 4.0))
            for ratio, value in ((0.0, 0.3 + seed / 100), (top, 0.5 + seed / 100))]  # fmt: skip
    pooled = study.pooled_mixing(pd.DataFrame(rows))
    assert len(pooled) == 2 and (pooled["n_seeds"] == 5).all()
    top = pooled.iloc[1]
    assert top["ratio"] == pytest.approx(3.996) and top["value"] == pytest.approx(0.52)
    assert top["lo"] < top["value"] < top["hi"]


def test_mixing_sweep_runs_each_reachable_ratio_once(scenario):
    table = study.mixing_sweep(scenario, [0.0, 1.0, 100.0])
    sizes = scenario.train.meta["skin_group"].value_counts()
    light = table[table["group"] == "light"]["ratio"].tolist()
    assert light == [0.0, sizes["dark"] / sizes["light"]]  # 1 and 100 both mean "all dark"
    dark = table[table["group"] == "dark"]["ratio"].tolist()
    assert dark == [0.0, 1.0, sizes["light"] / sizes["dark"]]
    mixing = study.Mixing("dark", 1.0)
    assert scenario.predictions(mixing) is scenario.predictions(study.Mixing("dark", 1.0))


def test_temperature_sweep_chooses_on_validation_and_shares_the_cache(scenario):
    base = Spare()
    table, found = study.temperature_sweep(scenario, base, [0.5, 50.0])
    best = found.chosen[study.RULE]
    worst = table.groupby("temperature")["val_auroc"].min()
    assert best.temperature == worst.idxmax() and found.trainings == 2
    assert table.loc[table["chosen"], "temperature"].eq(best.temperature).all()
    assert set(table["group"]) == {"dark", "light"} and table["value"].between(0, 1).all()
    flat = Spare(temperature=50.0)
    assert scenario.predictions(flat) is scenario.predictions(Spare(temperature=50.0))
    assert scenario.predictions(flat) is not scenario.predictions(Spare(temperature=0.5))
    assert flat.distances(scenario) is base.distances(scenario)  # once for every temperature
    with pytest.raises(ValueError, match="is empty"):
        study.temperature_sweep(scenario, base, [])


def test_paired_table_differences_each_pair_per_group_and_gap(scenario):
    reports = {
        name: scenario.experiment.evaluate(scenario.predictions(name))
        for name in ("erm", "resample")
    }
    rows = verdicts.paired_table(
        reports, [("resample", "erm")], "skin_group", gap_metrics=("equal_opportunity",)
    )
    assert list(rows["group"]) == ["dark", "light", "all"]
    dark = rows.iloc[0]
    assert dark.value == pytest.approx(dark.a_value - dark.b_value)
    assert dark.lo <= dark.value <= dark.hi
    same = verdicts.paired_table(
        {"x": reports["erm"], "y": reports["erm"]}, [("x", "y")], "skin_group"
    )
    assert (same["verdict"] == "no detectable difference").all()


def test_controls_give_single_model_baselines_group_thresholds(scenario):
    controls = study.controls()
    erm = scenario.predictions(controls["erm"])
    assert "decision" in erm.test and "decision" not in scenario.predictions("erm").test
    assert set(controls) >= {"erm, one threshold", "in_group"} and "spare" not in controls


def test_every_control_is_tuned_with_spares_budget_and_rule(scenario, monkeypatch):
    two = {k: v for k, v in study.controls().items() if k in ("erm", "threshold (EOdds)")}
    monkeypatch.setattr(study, "controls", lambda: two)
    tuned = study.tuned_controls(scenario)
    assert {label: t.trainings for label, t in tuned.items()} == {"erm": 3, "threshold (EOdds)": 3}
    erm = tuned["erm"].table
    best = erm.loc[erm["worst_group"].idxmax(), "candidate"]
    chosen = {label: t.chosen[study.RULE] for label, t in tuned.items()}
    assert chosen["erm"].base.lr == float(best.split("=")[1])
    assert chosen["threshold (EOdds)"].base == chosen["erm"].base  # one tuned ERM for both


def test_sharing_more_stages_than_a_backbone_has_is_refused_before_training():
    experiment = Experiment("skin", settings("smoke"), 0, "cpu", attribute="skin_group")
    scenarios = {("skin type", "small_cnn"): experiment.scenario("under", 0.25)}
    study.check_sharing(scenarios, share_stages=4)
    with pytest.raises(
        ValueError, match=r"share_stages=5: small_cnn has 4 stages \(0 to 4 can be shared\)"
    ):
        study.check_sharing(scenarios, share_stages=5)
    assert "cohorts" not in str(experiment._cache)  # nothing was generated


def test_the_premise_control_is_erm_minus_erm_trained_balanced_on_the_same_patients(scenario):
    with pytest.raises(ValueError, match="needs an under-representation; got 'none'"):
        study.premise_control(scenario.experiment.scenario("none"))
    rows = study.premise_control(scenario).set_index(["group", "metric"])
    assert set(rows["comparison"]) == {"positive control"}
    assert set(rows.index) == {(g, m) for g in ("dark", "light") for m in study.PER_GROUP_METRICS}
    f1 = rows.loc[("dark", "f1")]
    assert f1["value"] == pytest.approx(f1["a_value"] - f1["b_value"])
    assert f1["lo"] <= f1["value"] <= f1["hi"]


def test_the_weight_check_is_kishs_effective_sample_against_flat_weights():
    from types import SimpleNamespace

    import numpy as np

    weights = np.array([[1.0, 0.2], [0.8, 0.4], [0.3, 0.9], [0.1, 1.0]])

    class Weighed:
        def group_model(self, scenario):
            return None, ("dark", "light")

        def weights(self, scenario):
            return weights

    meta = pd.DataFrame({"skin_group": ["dark", "dark", "light", "light"]})
    scenario = SimpleNamespace(train=SimpleNamespace(meta=meta), attribute="skin_group")
    rows = study.weight_check(scenario, Weighed(), label="binary").set_index("group")
    assert rows.loc["dark", "a_value"] == pytest.approx(2.2**2 / 1.74)  # (sum w)^2 / sum w^2
    assert rows.loc["dark", "b_value"] == 4 and rows.loc["dark", "value"] < 0
    assert rows.loc["dark", "mean_out"] == pytest.approx(0.2)  # light images in dark's model
    assert rows.loc["light", "mean_in"] == pytest.approx(0.95)
    assert set(rows["a"]) == {"binary"} and set(rows["metric"]) == {"effective_size"}
    flat = study.weight_check(
        scenario, type("Flat", (Weighed,), {"weights": lambda s, sc: np.ones((4, 2))})()
    )
    assert (flat["value"] == 0).all()
