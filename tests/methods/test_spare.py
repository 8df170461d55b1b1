import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from fairkit.data import synth
from fairkit.methods import spare
from fairkit.models import GroupSpecific, backbone
from fairkit.training import TrainConfig, fit_attribute, head_index, predict


def linear(d_in, n_classes, seed=0):
    torch.manual_seed(seed)
    return nn.Linear(d_in, n_classes).double()


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.floats(0, 1e3), min_size=1, max_size=30),
    st.floats(0, 1),
    st.floats(1e-3, 1e3),
)
def test_weights_lie_in_the_unit_interval_and_are_one_at_distance_zero(d, lam, tau):
    d = np.array(d)
    w = spare.spare_weights(d, d[::-1].copy(), lam=lam, temperature=tau)
    assert ((w > 0) & (w <= 1)).all()
    assert (spare.spare_weights(np.zeros(3), np.zeros(3), lam=lam, temperature=tau) == 1).all()


def test_weights_fall_with_distance_and_refuse_bad_arguments():
    w = spare.spare_weights(np.array([0.0, 1, 2]), np.array([0.0, 1, 2]))
    assert w[0] == 1 and w[0] > w[1] > w[2]
    with pytest.raises(ValueError, match="lam"):
        spare.spare_weights(np.ones(2), np.ones(2), lam=1.5)
    with pytest.raises(ValueError, match="non-negative"):
        spare.spare_weights(-np.ones(2), np.ones(2))


def distances(n=200, seed=0):
    rng = np.random.default_rng(seed)
    similarity = rng.exponential(size=(n, 2))
    group = rng.integers(0, 2, n)
    similarity[np.arange(n), group] = 0
    in_group = np.stack([group == 0, group == 1], axis=1)
    return spare.Distances(rng.exponential(size=n), similarity, ("dark", "light")), in_group


@pytest.mark.parametrize("variant", ["spare", "similarity", "utility", "binary", "group_level"])
def test_every_variant_gives_weights_in_the_unit_interval(variant):
    d, in_group = distances()
    w = spare.weight_matrix(d, variant=variant, in_group=in_group)
    assert w.shape == (200, 2) and ((w > 0) & (w <= 1)).all()


def test_binary_and_group_level_keep_spares_total_weight():
    d, in_group = distances()
    base = spare.weight_matrix(d)
    binary = spare.weight_matrix(d, variant="binary")
    np.testing.assert_allclose((binary > 0.5).sum(0), base.sum(0).round(), atol=1)
    level = spare.weight_matrix(d, variant="group_level", in_group=in_group)
    np.testing.assert_allclose(level[~in_group[:, 0], 0].sum(), base[~in_group[:, 0], 0].sum())
    assert (level[in_group] == 1).all()


def test_similarity_only_gives_in_group_samples_weight_one():
    d, in_group = distances()
    w = spare.weight_matrix(d, variant="similarity")
    assert (w[in_group] == 1).all() and (w[~in_group] < 1).all()


def test_confidence_variant_needs_confidence_distances():
    d, _ = distances()
    with pytest.raises(ValueError, match="confidence"):
        spare.weight_matrix(d, variant="confidence")


@pytest.fixture(scope="module")
def skin():
    cohort = synth.generate("skin", 160, seed=3, image_size=16)
    return cohort.binarize(["melanoma", "bcc"], names=("benign", "malignant"))


def make_small(n_classes=2):
    return backbone("small_cnn", in_channels=3, n_classes=n_classes, image_size=16, width=4, seed=0)


def test_independent_heads_train_exactly_like_separate_models(skin):
    """share_stages=0 trains each head as if it were alone, with its own weights."""
    from fairkit.models.classifier import stages
    from fairkit.training import fit

    config = TrainConfig(epochs=2, batch_size=32, progress=False)
    weights = np.random.default_rng(0).uniform(0.05, 1, (len(skin), 2))
    joint = GroupSpecific(make_small, column="skin_group", groups=("a", "b"), share_stages=0)
    joint = fit(joint, skin, config=config, sample_weight=weights).model
    for g in range(2):
        alone = fit(make_small(), skin, config=config, sample_weight=weights[:, g]).model
        expected = nn.Sequential(*stages(alone)).state_dict()
        got = joint.branches[g].state_dict()
        assert expected.keys() == got.keys()
        for key in expected:
            torch.testing.assert_close(got[key], expected[key], rtol=1e-4, atol=1e-5)


def test_predictions_route_each_sample_to_its_group_head(skin):
    model = GroupSpecific(make_small, column="skin_group", groups=("dark", "light"), share_stages=1)
    table = predict(model, skin)
    heads = head_index(model, skin)
    with torch.no_grad():
        from fairkit.training import as_tensor

        all_heads = model.eval()(as_tensor(skin.images)).softmax(-1).numpy()
    expected = all_heads[np.arange(len(skin)), heads, 1]
    np.testing.assert_allclose(table["score_malignant"], expected, rtol=1e-5)


def test_wrong_weight_shape_is_refused(skin):
    model = GroupSpecific(make_small, column="skin_group", groups=("dark", "light"), share_stages=1)
    from fairkit.training import fit

    with pytest.raises(ValueError, match=r"shape \(160,\)"):
        fit(model, skin, config=TrainConfig(epochs=1, progress=False), sample_weight=np.ones(160))


def test_distances_of_a_cohort(skin):
    config = TrainConfig(epochs=1, batch_size=64, progress=False)
    task = make_small()
    group_model, groups = fit_attribute(
        make_small, skin, skin, attribute="skin_group", config=config
    )
    d = spare.boundary_distances(task, group_model, skin, groups=groups, device="cpu")
    assert d.utility.shape == (160,) and (d.utility > 0).all()
    assert d.similarity.shape == (160, 2)
    assert ((d.similarity == 0).sum(1) == 1).all()  # in one group's region, outside the other
    c = spare.boundary_distances(
        task, group_model, skin, groups=groups, estimator="confidence", device="cpu"
    )
    assert ((c.similarity == 0).sum(1) >= 1).all() and (c.utility <= 1).all()


def test_targeted_distances_for_more_than_two_groups():
    model = linear(6, 3, seed=4)
    from fairkit.data import Cohort

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (30, 1, 2, 3), dtype=np.uint8)
    meta = __import__("pandas").DataFrame({"label": rng.integers(0, 2, 30)})
    cohort = Cohort(images, meta, "toy", ("a", "b"))
    flat = nn.Sequential(nn.Flatten(), model.float())
    d = spare.boundary_distances(flat, flat, cohort, groups=("x", "y", "z"), device="cpu")
    predicted = flat(torch.from_numpy(images).float() / 255).argmax(1).numpy()
    assert (d.similarity[np.arange(30), predicted] == 0).all()
    assert ((d.similarity > 0).sum(1) == 2).all()
