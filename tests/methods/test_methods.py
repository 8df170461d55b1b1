import numpy as np
import pandas as pd
import pytest

from fairkit import fairness, methods
from fairkit.config import settings
from fairkit.experiment import Experiment
from fairkit.fairness import choose_threshold, report
from fairkit.methods.threshold import postprocess


def test_inverse_frequency_weights_give_each_group_equal_total_weight():
    groups = pd.Series(["a"] * 90 + ["b"] * 10)
    w = methods.inverse_frequency_weights(groups)
    assert w[:90].sum() == pytest.approx(w[90:].sum())
    assert w.mean() == pytest.approx(1)


def biased_scores(n, seed):
    """Scores that are systematically lower for group M: ERM at one threshold is unfair."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    g = rng.choice(["F", "M"], n)
    s = np.clip(0.35 * y + 0.65 * rng.random(n) - 0.2 * (g == "M"), 0, 1)
    return pd.DataFrame(
        {"y_true": y, "score_neg": 1 - s, "score_pos": s, "sex": g, "patient_id": np.arange(n)}
    )


@pytest.fixture(scope="module")
def cxr():
    """A smoke-size chest X-ray experiment (sex audited), shared by the tests below."""
    return Experiment("cxr", settings("smoke"), seed=1, device="cpu")


def test_threshold_optimizer_shrinks_the_equalized_odds_gap():
    def evaluate(predictions):
        threshold = choose_threshold(predictions.val, positive="pos")
        return report(
            predictions.test, groups=["sex"], positive="pos", thresholds=threshold, n_boot=50
        )

    erm = methods.MethodPredictions("erm", biased_scores(3000, 0), biased_scores(3000, 1))
    fair = postprocess(erm, attribute="sex", positive="pos", seed=0)
    assert set(np.unique(fair.test["decision"])) <= {0, 1}
    before, after = evaluate(erm), evaluate(fair)
    assert after.value("equalized_odds", attribute="sex") < 0.5 * before.value(
        "equalized_odds", attribute="sex"
    )


def _registered(name: str, scenario, folder):
    """The registered method ``name`` with the settings it cannot do without."""
    if name != "augment":
        return name
    extra = scenario.train.subset(range(8)).save(folder / "extra")  # a few images again
    return methods.get("augment", extra=str(extra))


@pytest.mark.parametrize("name", list(methods.REGISTRY))
def test_every_method_predicts_every_test_image(cxr, name, tmp_path):
    method = _registered(name, cxr.scenario("under", 0.3), tmp_path)
    out = cxr.run(method, "under", 0.3)
    test = cxr.scenario("under", 0.3).test
    assert sorted(out.test["patient_id"]) == sorted(test.meta["patient_id"])
    assert ("decision" in out.test) == (name in {"threshold", "in_group", "spare"})
    assert cxr.run(method, "under", 0.3) is out  # trained once


def test_a_method_at_the_loops_rate_is_trained_once_whether_the_rate_is_set_or_not(cxr):
    loop = cxr.config().lr
    left = cxr.run(methods.ERM(), "under", 0.3)
    assert cxr.run(methods.ERM(lr=loop), "under", 0.3) is left
    assert cxr.run(methods.ERM(lr=loop * 3), "under", 0.3) is not left


def test_threshold_post_processes_the_erm_model_without_retraining(cxr):
    erm, threshold = cxr.run("erm", "under", 0.3), cxr.run("threshold", "under", 0.3)
    assert threshold.model is erm.model and threshold.method == "threshold"
    pd.testing.assert_frame_equal(threshold.val.drop(columns="decision"), erm.val)
    assert set(threshold.val["decision"]) <= {0, 1}  # its own decisions on validation too


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="unknown method 'magic'; choose from erm"):
        methods.get("magic")


def test_unknown_bias_kind_is_refused(cxr):
    with pytest.raises(ValueError, match="kind must be one of"):
        cxr.run("erm", "sideways", 0.3)


def test_threshold_post_processing_reads_the_positive_class_by_name():
    """The positive class may have code 0: the decisions must not depend on the coding."""
    table = biased_scores(2000, 0)
    recoded = table.assign(y_true=1 - table["y_true"])[
        ["y_true", "score_pos", "score_neg", "sex", "patient_id"]
    ]  # classes in the order (pos, neg): pos has code 0
    assert fairness.class_index(recoded, "pos") == 0
    plain = postprocess(methods.MethodPredictions("erm", table, table), attribute="sex",
                        positive="pos", seed=0)  # fmt: skip
    flipped = postprocess(methods.MethodPredictions("erm", recoded, recoded), attribute="sex",
                          positive="pos", seed=0)  # fmt: skip
    np.testing.assert_array_equal(plain.test["decision"], flipped.test["decision"])
