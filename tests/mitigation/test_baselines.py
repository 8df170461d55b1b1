import numpy as np
import pandas as pd
import pytest

from fairkit.data import synth
from fairkit.mitigation import baselines
from fairkit.models.classifier import backbone
from fairkit.train import TrainConfig


def test_inverse_frequency_weights_give_each_group_equal_total_weight():
    groups = pd.Series(["a"] * 90 + ["b"] * 10)
    w = baselines.inverse_frequency_weights(groups)
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


def test_threshold_optimizer_shrinks_the_equalized_odds_gap():
    erm = baselines.MethodPredictions("erm", biased_scores(3000, 0), biased_scores(3000, 1))
    fair = baselines.postprocess(erm, attribute="sex", positive="pos", seed=0)
    assert set(np.unique(fair.test["decision"])) <= {0, 1}
    before = baselines.evaluate(erm, groups=["sex"], positive="pos", n_boot=50, seed=0)
    after = baselines.evaluate(fair, groups=["sex"], positive="pos", n_boot=50, seed=0)
    assert after.value("equalized_odds", attribute="sex") < 0.5 * before.value(
        "equalized_odds", attribute="sex"
    )


@pytest.fixture(scope="module")
def splits():
    cohorts = synth.make_splits("cxr", seed=1, image_size=16, n_train=160, n_val=64, n_test=64)
    return {
        k: c.binarize(["cardiomegaly", "effusion", "opacity"], names=("normal", "abnormal"))
        for k, c in cohorts.items()
    }


@pytest.mark.parametrize("method", baselines.METHODS)
def test_every_method_predicts_every_test_image(splits, method):
    out = baselines.run_method(
        method,
        make_model=lambda: backbone(
            "small_cnn", in_channels=1, n_classes=2, image_size=16, width=4, seed=0
        ),
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        attribute="sex",
        config=TrainConfig(epochs=1, batch_size=32, progress=False),
    )
    assert sorted(out.test["patient_id"]) == sorted(splits["test"].meta["patient_id"])
    assert ("decision" in out.test) == (method in {"threshold", "in_group"})


def test_unknown_method_is_refused(splits):
    with pytest.raises(ValueError, match="unknown method"):
        baselines.run_method(
            "magic",
            make_model=None,
            train=None,
            val=None,
            test=None,
            attribute="sex",
            config=TrainConfig(),
        )
