from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from fairkit.data import Cohort
from fairkit.data.preferences import read_preferences, write_preferences
from fairkit.models.classifier import backbone
from fairkit.rater import (
    Features,
    Rater,
    embed,
    fit_rater,
    nearest_neighbours,
    panel_choices,
    rate_pairs,
    rater_validity,
    validated,
)
from fairkit.training import TrainConfig

CONDITIONS = ["skin_group", "finding"]


def small_cnn(n_classes: int, channels: int = 3) -> nn.Module:
    return backbone(
        "small_cnn", in_channels=channels, n_classes=n_classes, image_size=16, width=4, seed=0
    )


class Brightness(nn.Module):
    """An oracle of the toy cohort's group: dark images are class 0, bright ones class 1."""

    def forward(self, x):
        m = x.mean((1, 2, 3))
        return torch.stack([0.5 - m, m - 0.5], 1) * 20


class Constant(nn.Module):
    """Always class ``k`` of two."""

    def __init__(self, k: int):
        super().__init__()
        self.k = k

    def forward(self, x):
        return nn.functional.one_hot(torch.full((len(x),), self.k), 2).float() * 5


def hand_rater(pathology: nn.Module, group: nn.Module, channels: int = 1) -> Rater:
    features = Features(small_cnn(2, channels))
    return Rater(
        pathology_model=pathology,
        group_model=group,
        attribute="skin_group",
        findings=("benign", "malignant"),
        groups=("dark", "light"),
        features=features,
        train_features=np.zeros((3, features.num_features), np.float32),
        scale=1.0,
    )


def toy_cohort(n: int = 40) -> Cohort:
    """Dark and light 8-px images; the finding is random, so no image shows it."""
    rng = np.random.default_rng(0)
    light = np.arange(n) % 2 == 1
    base = np.where(light, 200, 40)[:, None, None, None]
    images = (base + rng.integers(0, 30, (n, 1, 8, 8))).astype(np.uint8)
    finding = rng.choice(["benign", "malignant"], n)
    meta = pd.DataFrame(
        {
            "label": (finding == "malignant").astype(int),
            "skin_group": np.where(light, "light", "dark"),
            "finding": finding,
            "patient_id": np.arange(n) // 2,
        }
    )
    return Cohort(images, meta, "toy", ("benign", "malignant"))


@pytest.fixture(scope="module")
def data(skin_findings):
    return skin_findings(96, seed=0), skin_findings(32, seed=1)


@pytest.fixture(scope="module")
def rater(data):
    train, val = data
    config = TrainConfig(epochs=1, batch_size=32, progress=False)
    return fit_rater(
        train, val, attribute="skin_group", make_model=small_cnn, config=config, min_steps=3
    )


def test_fit_rater_raises_the_epochs_to_its_fewest_steps(data, monkeypatch):
    train, val = data  # 96 images at batch 32: 3 steps an epoch
    epochs, balanced_ = [], []

    def record(make_model, train, val, *, attribute, config, balanced):
        epochs.append(config.epochs)
        balanced_.append(balanced)
        return small_cnn(2), ("a", "b")

    monkeypatch.setattr("fairkit.rater.fit_attribute", record)
    config = TrainConfig(epochs=2, batch_size=32, progress=False)
    for min_steps in (30, 31, 6, 1):
        fit_rater(train, val, attribute="skin_group", make_model=small_cnn, config=config,
                  min_steps=min_steps)  # fmt: skip
    assert epochs == [10, 10, 11, 11, 2, 2, 2, 2]
    assert all(balanced_)  # an instrument draws its classes equally often


def test_features_are_frozen_eval_mode_and_report_their_length():
    classifier = small_cnn(2)
    features = Features(classifier)
    features.train()
    images = torch.randint(0, 256, (5, 3, 16, 16), dtype=torch.uint8)
    out = features(images)
    assert features.num_features == 16 and out.shape == (5, 16)
    assert not features.training and not out.requires_grad
    assert not any(p.requires_grad for p in features.parameters())
    assert all(p.requires_grad for p in classifier.parameters())  # the original stays trainable
    with torch.no_grad():  # the classifier's last layer applied to the features gives its logits
        logits = classifier.eval()(images.float() / 255)
        head = list(classifier)[-1]
        assert torch.allclose(head(out), logits, atol=1e-5)
    with pytest.raises(TypeError, match="uint8"):
        features(images.float())


def test_embed_matches_the_module_in_any_batch_size():
    features = Features(small_cnn(2))
    images = np.random.default_rng(0).integers(0, 256, (7, 3, 16, 16), dtype=np.uint8)
    np.testing.assert_allclose(
        embed(features, images, batch_size=3), embed(features, images), atol=1e-5
    )


def test_nearest_neighbours_finds_copies_at_distance_zero_and_can_skip_self():
    rng = np.random.default_rng(0)
    reference = rng.integers(0, 256, (30, 3, 8, 8), dtype=np.uint8)
    index, distance = nearest_neighbours(reference[[4, 17]], reference, batch_size=7)
    assert index.tolist() == [4, 17] and distance.tolist() == [0.0, 0.0]
    index, distance = nearest_neighbours(reference, reference, exclude_self=True, batch_size=7)
    assert (index != np.arange(30)).all() and (distance > 0).all()
    brute = np.linalg.norm(
        (reference[:, None] / 255 - reference[None] / 255).reshape(30, 30, -1), axis=-1
    )
    np.fill_diagonal(brute, np.inf)
    np.testing.assert_allclose(distance, brute.min(1), rtol=1e-5)


def test_fit_rater_trains_both_classifiers_and_a_positive_scale(rater, data):
    train, _ = data
    assert rater.findings == ("benign", "malignant") and rater.groups == ("dark", "light")
    assert rater.train_features.shape == (len(train), rater.features.num_features)
    assert rater.scale > 0


def test_realism_is_one_for_a_training_copy_and_lower_for_noise(rater, data):
    train, _ = data
    conditions = train.meta[CONDITIONS].iloc[:6]
    copies = rater.score(train.images[:6], conditions)
    noise = np.random.default_rng(0).integers(0, 256, (6, 3, 16, 16), dtype=np.uint8)
    scored = rater.score(noise, conditions)
    np.testing.assert_allclose(copies["realism"], 1, atol=1e-4)
    assert (scored["realism"] < 0.9).all() and (scored["realism"] > 0).all()
    np.testing.assert_allclose(
        scored["score"], scored[["pathology", "group", "realism"]].mean(axis=1)
    )
    probs = rater.probabilities(noise)["pathology"]
    wanted = (conditions["finding"] == "malignant").to_numpy().astype(int)
    np.testing.assert_allclose(scored["pathology"], probs[np.arange(6), wanted], rtol=1e-6)


def test_score_refuses_a_condition_value_the_classifiers_never_saw(rater, data):
    train, _ = data
    conditions = train.meta[CONDITIONS].iloc[:2].assign(finding=["benign", "psoriasis"])
    with pytest.raises(ValueError, match=r"finding values \['psoriasis'\] were never seen"):
        rater.score(train.images[:2], conditions)
    with pytest.raises(KeyError, match="skin_group"):
        rater.score(train.images[:2], train.meta[["finding"]].iloc[:2])


def test_rater_validity_tells_an_oracle_from_a_constant_classifier():
    table = rater_validity(
        hand_rater(Constant(0), Brightness()), toy_cohort(), n_boot=200, seed=0
    ).set_index("component")
    assert table.loc["group", "balanced_accuracy"] == 1 and table.loc["group", "valid"]
    assert table.loc["pathology", "balanced_accuracy"] == 0.5
    assert not table.loc["pathology", "valid"]
    assert (table["chance"] == 0.5).all() and (table["lo"] <= table["balanced_accuracy"]).all()


def test_validated_leaves_a_classifier_at_chance_out_of_the_score():
    rater = hand_rater(Constant(0), Brightness())
    cohort = toy_cohort()
    trusted = validated(rater, rater_validity(rater, cohort, n_boot=200, seed=0))
    assert rater.scored == ("pathology", "group") and trusted.scored == ("group",)
    scored = trusted.score(cohort.images, cohort.meta[CONDITIONS])
    assert scored["pathology"].isna().all() and scored["group"].notna().all()
    np.testing.assert_allclose(scored["score"], scored[["group", "realism"]].mean(axis=1))
    realism_only = replace(rater, scored=()).score(cohort.images, cohort.meta[CONDITIONS])
    np.testing.assert_allclose(realism_only["score"], realism_only["realism"])
    with pytest.raises(ValueError, match=r"scored components .* got \['texture'\]"):
        replace(rater, scored=("texture",))


def test_full_agreement_always_prefers_the_higher_score():
    rng = np.random.default_rng(1)
    first, second = rng.random(300), rng.random(300)
    first_wins, flipped = panel_choices(first, second, agreement=1.0, seed=0)
    assert not flipped.any()
    np.testing.assert_array_equal(first_wins, first >= second)


def test_half_agreement_reverses_about_half_the_pairs():
    rng = np.random.default_rng(1)
    first, second = rng.random(400), rng.random(400)
    first_wins, flipped = panel_choices(first, second, agreement=0.5, seed=0)
    assert abs(flipped.sum() - 200) < 40  # 4 binomial standard deviations
    np.testing.assert_array_equal(first_wins != (first >= second), flipped)
    _, at_80 = panel_choices(first, second, agreement=0.8, seed=0)
    assert abs(at_80.sum() - 80) < 32


@pytest.mark.parametrize("agreement", [0.4, 1.1, float("nan")])
def test_agreement_outside_half_to_one_is_refused(agreement):
    with pytest.raises(ValueError, match=r"agreement must be in \[0.5, 1\]"):
        panel_choices(np.ones(3), np.zeros(3), agreement=agreement, seed=0)


def test_rated_pairs_index_their_images_and_round_trip(rater, data, tmp_path):
    train, _ = data
    conditions = train.meta[CONDITIONS].iloc[:8]
    first = train.images[:8]
    second = np.random.default_rng(0).integers(0, 256, first.shape, dtype=np.uint8)
    pairs, images = rate_pairs(rater, first, second, conditions=conditions, agreement=1.0, seed=0)
    assert images.shape == (16, 3, 16, 16) and not pairs["flipped"].any()
    assert (pairs["winner_score"] >= pairs["loser_score"]).all()
    scores = np.r_[
        rater.score(first, conditions)["score"], rater.score(second, conditions)["score"]
    ]
    np.testing.assert_allclose(pairs["winner_score"], scores[pairs["winner"]])
    assert ((pairs["winner"] % 8) == pairs["pair_id"]).all()
    assert (pairs["finding"].to_numpy() == conditions["finding"].to_numpy()).all()
    write_preferences(tmp_path / "prefs", pairs, images, conditions=CONDITIONS)
    back, back_images = read_preferences(tmp_path / "prefs", conditions=CONDITIONS)
    pd.testing.assert_frame_equal(back, pairs, check_dtype=False)
    np.testing.assert_array_equal(back_images, images)
