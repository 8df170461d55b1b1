"""The one tuning protocol: every method the same budget, chosen on validation data only."""

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from fairkit import methods, tuning
from fairkit.config import settings
from fairkit.experiment import Experiment
from fairkit.methods import MethodPredictions


def _registered(name):
    cls = methods.REGISTRY[name]
    return cls(extra="unused") if name == "augment" else cls()


@pytest.mark.parametrize("name", sorted(methods.REGISTRY))
def test_every_registered_method_is_tuned_with_the_same_budget(name):
    method = _registered(name)
    if hasattr(method, "base"):  # post-processing: tuned through its (registered) base
        base = methods.get(method.base)
        assert len(tuning.candidates(base)) == tuning.BUDGET
    else:
        assert len(tuning.candidates(method)) == tuning.BUDGET


def test_a_method_added_without_a_search_is_refused_by_name():
    @dataclass(frozen=True)
    class Unsearched:  # a method that is not a variant of ERM, without ``search()``
        name: str = "mine"
        lr: float = 1e-3

    with pytest.raises(ValueError, match="mine: declares no search"):
        tuning.candidates(Unsearched())
    with pytest.raises(ValueError, match="no field \\['momentum'\\]"):
        tuning.candidates(Unsearched(), {"momentum": (0.9,)})
    with pytest.raises(ValueError, match="is empty"):
        tuning.candidates(Unsearched(), {"lr": ()})
    with pytest.raises(ValueError, match="no field \\['name'\\]"):
        tuning.candidates(Unsearched(), {"name": ("other",)})


def test_a_group_without_an_auroc_leaves_the_worst_group_undefined_not_another_group():
    val = pd.DataFrame({"y_true": [0, 1, 0, 1, 1, 1], "score_no": 0.5, "score_yes": [0.1, 0.9, 0.2, 0.8, 0.6, 0.7],
                        "g": ["a", "a", "a", "a", "b", "b"]})  # fmt: skip
    scores = tuning.validation_scores(val, attribute="g", positive="yes")
    assert scores["overall"] == 1.0 and np.isnan(scores["worst_group"]) and np.isnan(scores["gap"])
    table = tuning.with_distance(pd.DataFrame([scores, scores]))
    assert tuning.select(table, "overall") == 0
    with pytest.raises(ValueError, match="no candidate has a validation worst-group AUROC"):
        tuning.select(table, "worst_group")


def test_each_rule_keeps_its_own_candidate():
    table = pd.DataFrame(
        {
            "overall": [0.90, 0.85, 0.88],
            "worst_group": [0.70, 0.84, 0.83],
            "gap": [0.20, 0.02, 0.05],
        }
    )
    table = tuning.with_distance(table)  # utopia (0.90, 0.02): distances 0.18, 0.05, 0.036
    assert table["distance"].round(3).tolist() == [0.18, 0.05, 0.036]
    assert [tuning.select(table, rule) for rule in tuning.RULES] == [0, 1, 2]
    with pytest.raises(ValueError, match="rule must be one of"):
        tuning.select(table, "test_auroc")


@dataclass(frozen=True)
class _ValidationOnly:
    """A method whose quality depends on ``knob`` and whose predictions have no test table."""

    name: str = "fake"
    knob: float = 0.0

    def search(self):
        return {"knob": (0.0, 1.0, 2.0)}

    def __call__(self, scenario):
        rng = np.random.default_rng(0)
        n = 400
        y, group = rng.integers(0, 2, n), np.repeat(["light", "dark"], n // 2)
        noise = np.where(group == "dark", 1.5 - 0.3 * self.knob, 0.2 + 0.6 * self.knob)
        score = 1 / (1 + np.exp(-(2 * y - 1) - noise * rng.normal(size=n)))
        val = pd.DataFrame({"y_true": y, "score_benign": 1 - score, "score_malignant": score,
                            "skin_group": group})  # fmt: skip
        return MethodPredictions(self.name, val, test=None)  # the rules must not need it


@dataclass(frozen=True)
class _ValidationScenario:
    """A scenario that can only hand out a method's predictions: no cohort, no test set."""

    attribute: str = "skin_group"
    positive: str = "malignant"

    def predictions(self, method):
        return method(self)


def test_tuning_reads_validation_predictions_only_and_keeps_one_candidate_per_rule():
    found = tuning.tune(_ValidationScenario(), _ValidationOnly())
    assert found.trainings == 3
    assert list(found.table["candidate"]) == ["knob=0", "knob=1", "knob=2"]
    for rule in tuning.RULES:
        kept = found.table.loc[tuning.select(found.table, rule), "candidate"]
        assert found.chosen[rule].knob == float(kept.split("=")[1])
        assert rule in found.table.set_index("candidate").loc[kept, "chosen_by"]
    # validation AUROC overall / light / dark: 0.911 / 1.000 / 0.823, 0.925 / 0.977 / 0.874,
    # 0.909 / 0.890 / 0.932: the rules disagree
    assert found.chosen["overall"].knob == 1.0
    assert found.chosen["worst_group"].knob == 2.0


def test_post_processing_is_tuned_through_its_base_at_no_training_of_its_own():
    scenario = Experiment("skin", settings("smoke"), seed=0, device="cpu").scenario("under", 0.2)
    erm = tuning.tune(scenario, methods.ERM())
    remembered = len(scenario.experiment._cache)
    found = tuning.tune(scenario, methods.Threshold())
    assert len(scenario.experiment._cache) == remembered  # nothing trained or predicted anew
    assert found.trainings == erm.trainings == tuning.BUDGET  # the same models, trained once
    for rule in tuning.RULES:
        assert found.chosen[rule] == methods.Threshold(base=erm.chosen[rule])
    assert set(found.table["method"]) == {"threshold"}


def test_the_baselines_own_hyperparameters_are_checked_and_change_their_training():
    with pytest.raises(ValueError, match="groupdro: eta must be a finite positive number"):
        methods.GroupDRO(eta=0.0)
    with pytest.raises(ValueError, match="reweight: exponent must be a finite non-negative"):
        methods.Reweight(exponent=-1.0)
    groups = pd.Series(["a"] * 90 + ["b"] * 10)
    assert np.allclose(methods.inverse_frequency_weights(groups, 0.0), 1.0)
    half = methods.inverse_frequency_weights(groups, 0.5)
    assert half[90] / half[0] == pytest.approx(3.0)  # sqrt(90 / 10)
    scenario = Experiment("skin", settings("smoke"), seed=0, device="cpu").scenario("under", 0.2)
    config, _ = methods.GroupDRO(eta=0.7).training(scenario)
    assert config.dro_eta == 0.7
    # as the GroupDRO paper's code runs it: the robust loss over group-balanced batches
    assert (config.objective, config.sampling) == ("groupdro", "group_balanced")
    assert config.group_column == scenario.attribute


def test_group_aurocs_per_group_and_nan_for_one_class():
    val = pd.DataFrame(
        {
            "g": ["a"] * 4 + ["b"] * 3,
            "y_true": [0, 0, 1, 1, 1, 1, 1],
            "score_no": [0.9, 0.6, 0.4, 0.1, 0.5, 0.5, 0.5],
            "score_yes": [0.1, 0.4, 0.6, 0.9, 0.5, 0.5, 0.5],
        }
    )
    auroc = tuning.group_aurocs(val, attribute="g", positive="yes")
    assert auroc["a"] == 1.0 and np.isnan(auroc["b"])


def test_the_experiments_selection_rule_keeps_every_one_model_methods_epoch():
    with pytest.raises(ValueError, match="selection must be one of .*; got 'per_head'"):
        Experiment("skin", settings("smoke"), seed=0, device="cpu", selection="per_head")
    worst = Experiment("skin", settings("smoke"), 0, "cpu", selection="worst_group")
    scenario = worst.scenario("under", 0.2)
    for name in ("erm", "resample", "reweight", "groupdro"):
        config, _ = methods.get(name, lr=1e-3).training(scenario)
        assert (config.selection, config.group_column, config.lr) == (
            "worst_group",
            "skin_group",
            1e-3,
        )
    plain = Experiment("skin", settings("smoke"), 0, "cpu").scenario("under", 0.2)
    assert methods.ERM().training(plain)[0].selection == "overall"
