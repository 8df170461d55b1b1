import numpy as np
import pandas as pd
import pytest

from fairkit.config import settings
from fairkit.data import synth
from fairkit.experiment import Experiment
from fairkit.methods import MethodPredictions, Spare
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


def test_mixing_sweep_runs_each_reachable_ratio_once(scenario):
    table = study.mixing_sweep(scenario, [0.0, 1.0, 100.0])
    sizes = scenario.train.meta["skin_group"].value_counts()
    light = table[table["group"] == "light"]["ratio"].tolist()
    assert light == [0.0, sizes["dark"] / sizes["light"]]  # 1 and 100 both mean "all dark"
    dark = table[table["group"] == "dark"]["ratio"].tolist()
    assert dark == [0.0, 1.0, sizes["light"] / sizes["dark"]]
    mixing = study.Mixing("dark", 1.0)
    assert scenario.predictions(mixing) is scenario.predictions(study.Mixing("dark", 1.0))


def test_validation_auroc_per_group_and_nan_for_one_class():
    val = pd.DataFrame(
        {
            "g": ["a"] * 4 + ["b"] * 3,
            "y_true": [0, 0, 1, 1, 1, 1, 1],
            "score_no": [0.9, 0.6, 0.4, 0.1, 0.5, 0.5, 0.5],
            "score_yes": [0.1, 0.4, 0.6, 0.9, 0.5, 0.5, 0.5],
        }
    )
    auroc = study.validation_auroc(MethodPredictions("m", val, val), "g", "yes")
    assert auroc["a"] == 1.0 and np.isnan(auroc["b"])


def test_temperature_sweep_chooses_on_validation_and_shares_the_cache(scenario):
    base = Spare()
    table, best = study.temperature_sweep(scenario, base, [0.5, 50.0])
    worst = table.groupby("temperature")["val_auroc"].min()
    assert best.temperature == worst.idxmax()
    assert table.loc[table["chosen"], "temperature"].eq(best.temperature).all()
    assert set(table["group"]) == {"dark", "light"} and table["value"].between(0, 1).all()
    flat = Spare(temperature=50.0)
    assert scenario.predictions(flat) is scenario.predictions(Spare(temperature=50.0))
    assert scenario.predictions(flat) is not scenario.predictions(Spare(temperature=0.5))
    assert flat.distances(scenario) is base.distances(scenario)  # once for every temperature
    with pytest.raises(ValueError, match="at least one"):
        study.temperature_sweep(scenario, base, [])


def test_findings_word_comparisons_by_their_intervals():
    def f1(method, dark, light):
        return pd.DataFrame(
            {"setting": "skin", "method": method, "group": ["dark", "light"], "metric": "f1",
             "value": [dark, light], "lo": [dark - 0.1, light - 0.1], "hi": [dark + 0.1, light + 0.1]}
        )  # fmt: skip

    by_group = pd.concat([f1("erm", 0.5, 0.6), f1("resample", 0.6, 0.75), f1("spare", 0.55, 0.9)])
    ablation = pd.DataFrame(
        {"variant": ["spare", "binary"], "group": "dark", "metric": "f1", "value": [0.7, 0.8],
         "lo": [0.65, 0.71], "hi": [0.75, 0.85]}
    )  # fmt: skip
    sharing = pd.DataFrame(
        {"shared": [0, 0, 2, 2], "group": ["dark", "light"] * 2, "of": 4,
         "value": [0.7, 0.7, 0.2, 0.9], "lo": [0.6, 0.6, 0.1, 0.8], "hi": [0.8, 0.8, 0.3, 1.0]}
    )  # fmt: skip
    table = study.findings(by_group, ablation, sharing).set_index(["comparison", "b", "group"])
    # SPARE vs ERM: dark intervals overlap (0.45-0.65 vs 0.40-0.60); light ones do not.
    assert table.loc[("method", "erm", "dark"), "verdict"] == "no detectable difference"
    assert table.loc[("method", "erm", "light"), "verdict"] == "better"
    assert table.loc[("method", "resample", "light"), "verdict"] == "no detectable difference"
    # A higher point estimate whose interval overlaps is no win.
    assert table.loc[("ablation", "spare", "dark"), "verdict"] == "no detectable difference"
    assert table.loc[("sharing", 0, "dark"), "verdict"] == "worse"
    assert table.loc[("sharing", 0, "light"), "verdict"] == "no detectable difference"
