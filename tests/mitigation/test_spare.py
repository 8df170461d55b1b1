import copy
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.fx.experimental.optimization import fuse

from fairkit.data import synth
from fairkit.mitigation import spare
from fairkit.models.classifier import backbone
from fairkit.train import TrainConfig, fit_attribute, head_index, predict


def linear(d_in, n_classes, seed=0):
    torch.manual_seed(seed)
    return nn.Linear(d_in, n_classes).double()


def test_binary_distance_is_the_analytic_one():
    model = linear(20, 2)
    x = torch.randn(64, 20, dtype=torch.float64)
    w = model.weight[1] - model.weight[0]
    b = model.bias[1] - model.bias[0]
    exact = ((x @ w + b).abs() / w.norm()).detach().numpy()
    found = spare.deepfool(model, x, batch_size=16)
    np.testing.assert_allclose(found.distance, exact, rtol=1e-4)
    assert found.converged.all() and (found.iterations == 1).all()


def test_multiclass_distance_is_the_nearest_class_hyperplane():
    model = linear(12, 5, seed=1)
    x = torch.randn(100, 12, dtype=torch.float64)
    with torch.no_grad():
        logits = model(x)
    k0 = logits.argmax(1)
    rows = torch.arange(len(x))
    w_diff = model.weight[None] - model.weight[k0][:, None]  # (N, K, D)
    f_diff = logits - logits[rows, k0][:, None]
    dist = f_diff.abs() / w_diff.norm(dim=2)
    dist[rows, k0] = torch.inf
    exact = dist.min(1).values.detach().numpy()
    found = spare.deepfool_distance(model, x, candidates=4)
    np.testing.assert_allclose(found, exact, rtol=1e-4)


def test_few_candidates_never_undershoot_the_exact_distance():
    """With fewer candidates DeepFool may step to a farther boundary, never a nearer one."""
    model = linear(12, 5, seed=1)
    x = torch.randn(100, 12, dtype=torch.float64)
    all_classes = spare.deepfool_distance(model, x, candidates=4)
    top1 = spare.deepfool_distance(model, x, candidates=1)
    assert (top1 >= all_classes - 1e-9).all()


def relu_net(n_classes, seed=0):
    """A small non-linear network on 3x8x8 images, in float64."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(512, n_classes)
    ).double()


def test_adding_the_perturbation_changes_the_prediction_of_a_cnn():
    model = relu_net(3)
    x = torch.rand(40, 3, 8, 8, dtype=torch.float64)
    found = spare.deepfool(model, x, candidates=2, max_iter=50)
    with torch.no_grad():
        before, after = model(x).argmax(1), model(x + found.perturbation).argmax(1)
    assert found.converged.all()
    assert (before != after).all()
    assert (found.distance > 0).all()


def test_batched_and_one_by_one_agree_and_converged_inputs_stop():
    model = relu_net(2, seed=1)
    x = torch.rand(24, 3, 8, 8, dtype=torch.float64)
    batched = spare.deepfool(model, x, batch_size=24)
    single = [spare.deepfool(model, x[i : i + 1]) for i in range(len(x))]
    np.testing.assert_allclose(
        batched.distance, [s.distance[0] for s in single], rtol=1e-4, atol=1e-6
    )
    np.testing.assert_array_equal(batched.iterations, [s.iterations[0] for s in single])
    assert batched.iterations.max() > batched.iterations.min() >= 1


def test_a_model_folded_already_gives_the_same_distances():
    """fuse() of a traced model is skipped; both paths fold batch norm into the same model."""
    model = backbone("small_cnn", in_channels=1, n_classes=2, image_size=16, width=4).double()
    model.train()(torch.rand(32, 1, 16, 16, dtype=torch.float64))  # batch-norm statistics
    x = torch.rand(16, 1, 16, 16, dtype=torch.float64)
    folded = fuse(copy.deepcopy(model).eval())
    np.testing.assert_allclose(
        spare.deepfool_distance(folded, x), spare.deepfool_distance(model, x), rtol=1e-9
    )


def test_model_state_is_restored():
    model = backbone("small_cnn", in_channels=1, n_classes=2, image_size=16, width=4).train()
    spare.deepfool(model, torch.rand(4, 1, 16, 16))
    assert model.training and all(p.requires_grad for p in model.parameters())


def test_targeted_distance_is_zero_for_inputs_already_in_the_target():
    model = linear(6, 3, seed=2)
    x = torch.randn(50, 6, dtype=torch.float64)
    predicted = model(x).argmax(1).numpy()
    d = spare.deepfool_distance(model, x, target=1)
    assert (d[predicted == 1] == 0).all() and (d[predicted != 1] > 0).all()


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


@pytest.mark.parametrize("name", ["small_cnn", "resnet18", "vgg11"])
def test_group_specific_sharing_counts(name):
    def make():
        return backbone(name, in_channels=1, n_classes=2, image_size=32, width=4, seed=0)

    k = spare.n_stages(make)
    sizes = []
    for share in range(k + 1):
        model = spare.GroupSpecific(make, column="g", groups=["a", "b"], share_stages=share)
        assert model(torch.rand(3, 1, 32, 32)).shape == (3, 2, 2)
        sizes.append(sum(p.numel() for p in model.parameters()))
    single = sum(p.numel() for p in make().parameters())
    assert sizes[0] == 2 * single and sizes[-1] == single
    assert all(a > b for a, b in zip(sizes, sizes[1:], strict=False))
    with pytest.raises(ValueError, match="share_stages"):
        spare.GroupSpecific(make, column="g", groups=["a", "b"], share_stages=k + 1)


@pytest.fixture(scope="module")
def skin():
    cohort = synth.generate("skin", 160, seed=3, image_size=16)
    return cohort.binarize(["melanoma", "bcc"], names=("benign", "malignant"))


def make_small(n_classes=2):
    return backbone("small_cnn", in_channels=3, n_classes=n_classes, image_size=16, width=4, seed=0)


def test_independent_heads_train_exactly_like_separate_models(skin):
    """share_stages=0 trains each head as if it were alone, with its own weights."""
    from fairkit.models.classifier import stages
    from fairkit.train import fit

    config = TrainConfig(epochs=2, batch_size=32, progress=False)
    weights = np.random.default_rng(0).uniform(0.05, 1, (len(skin), 2))
    joint = spare.GroupSpecific(make_small, column="skin_group", groups=("a", "b"), share_stages=0)
    joint = fit(joint, skin, config=config, sample_weight=weights).model
    for g in range(2):
        alone = fit(make_small(), skin, config=config, sample_weight=weights[:, g]).model
        expected = nn.Sequential(*stages(alone)).state_dict()
        got = joint.branches[g].state_dict()
        assert expected.keys() == got.keys()
        for key in expected:
            torch.testing.assert_close(got[key], expected[key], rtol=1e-4, atol=1e-5)


def test_predictions_route_each_sample_to_its_group_head(skin):
    model = spare.GroupSpecific(
        make_small, column="skin_group", groups=("dark", "light"), share_stages=1
    )
    table = predict(model, skin)
    heads = head_index(model, skin)
    with torch.no_grad():
        from fairkit.train import as_tensor

        all_heads = model.eval()(as_tensor(skin.images)).softmax(-1).numpy()
    expected = all_heads[np.arange(len(skin)), heads, 1]
    np.testing.assert_allclose(table["score_malignant"], expected, rtol=1e-5)


def test_wrong_weight_shape_is_refused(skin):
    model = spare.GroupSpecific(
        make_small, column="skin_group", groups=("dark", "light"), share_stages=1
    )
    from fairkit.train import fit

    with pytest.raises(ValueError, match=r"shape \(160,\)"):
        fit(model, skin, config=TrainConfig(epochs=1, progress=False), sample_weight=np.ones(160))


def test_distances_of_a_cohort(skin):
    config = TrainConfig(epochs=1, batch_size=64, progress=False)
    task = make_small()
    group_model, groups = fit_attribute(
        make_small, skin, skin, attribute="skin_group", config=config
    )
    d = spare.boundary_distances(task, group_model, skin, groups=groups)
    assert d.utility.shape == (160,) and (d.utility > 0).all()
    assert d.similarity.shape == (160, 2)
    assert ((d.similarity == 0).sum(1) == 1).all()  # in one group's region, outside the other
    c = spare.boundary_distances(task, group_model, skin, groups=groups, estimator="confidence")
    assert ((c.similarity == 0).sum(1) >= 1).all() and (c.utility <= 1).all()


def test_mixing_subset_keeps_the_group_and_adds_a_share_of_others(skin):
    sub = spare.mixing_subset(skin, attribute="skin_group", group="dark", ratio=0.5, seed=0)
    n_dark = (skin.meta["skin_group"] == "dark").sum()
    assert (sub.meta["skin_group"] == "dark").sum() == n_dark
    assert (sub.meta["skin_group"] != "dark").sum() == min(
        round(0.5 * n_dark), (skin.meta["skin_group"] != "dark").sum()
    )


def test_targeted_distances_for_more_than_two_groups():
    model = linear(6, 3, seed=4)
    from fairkit.data import Cohort

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (30, 1, 2, 3), dtype=np.uint8)
    meta = __import__("pandas").DataFrame({"label": rng.integers(0, 2, 30)})
    cohort = Cohort(images, meta, "toy", ("a", "b"))
    flat = nn.Sequential(nn.Flatten(), model.float())
    d = spare.boundary_distances(flat, flat, cohort, groups=("x", "y", "z"))
    predicted = flat(torch.from_numpy(images).float() / 255).argmax(1).numpy()
    assert (d.similarity[np.arange(30), predicted] == 0).all()
    assert ((d.similarity > 0).sum(1) == 2).all()


def test_mixing_sweep_runs_each_reachable_ratio_once(skin):
    from fairkit import amplification
    from fairkit.config import settings

    experiment = amplification.Experiment(
        "skin", settings("smoke"), 0, "cpu", attribute="skin_group"
    )
    study = spare.Study(experiment, "under", 0.25)
    table = spare.mixing_sweep(study, [0.0, 1.0, 100.0])
    sizes = study.cohorts["train"].meta["skin_group"].value_counts()
    light = table[table["group"] == "light"]["ratio"].tolist()
    assert light == [0.0, sizes["dark"] / sizes["light"]]  # 1 and 100 both mean "all dark"
    dark = table[table["group"] == "dark"]["ratio"].tolist()
    assert dark == [0.0, 1.0, sizes["light"] / sizes["dark"]]
    assert study.mixing("dark", 1.0) is study.mixing("dark", 1.0)


def test_validation_auroc_per_group_and_nan_for_one_class():
    from fairkit.mitigation.baselines import MethodPredictions

    val = pd.DataFrame(
        {
            "g": ["a"] * 4 + ["b"] * 3,
            "y_true": [0, 0, 1, 1, 1, 1, 1],
            "score_no": [0.9, 0.6, 0.4, 0.1, 0.5, 0.5, 0.5],
            "score_yes": [0.1, 0.4, 0.6, 0.9, 0.5, 0.5, 0.5],
        }
    )
    auroc = spare.validation_auroc(MethodPredictions("m", val, val), "g", "yes")
    assert auroc["a"] == 1.0 and np.isnan(auroc["b"])


def test_temperature_sweep_chooses_on_validation_and_shares_the_cache(skin):
    from fairkit import amplification
    from fairkit.config import settings

    experiment = amplification.Experiment(
        "skin", settings("smoke"), 0, "cpu", attribute="skin_group"
    )
    study = spare.Study(experiment, "under", 0.25)
    table, best = spare.temperature_sweep(study, [0.5, 50.0])
    worst = table.groupby("temperature")["val_auroc"].min()
    assert best == worst.idxmax() and table.loc[table["chosen"], "temperature"].eq(best).all()
    assert set(table["group"]) == {"dark", "light"} and table["value"].between(0, 1).all()
    flat = replace(study, temperature=50.0)
    assert flat.run() is flat.run() and flat.run() is not study.run()  # tau is in the key
    assert flat.distances() is study.distances()  # computed once for every temperature
    with pytest.raises(ValueError, match="at least one"):
        spare.temperature_sweep(study, [])


def test_findings_compare_spare_with_erm_and_every_baseline():
    def f1(method, dark, light):
        return pd.DataFrame(
            {"setting": "skin", "method": method, "group": ["dark", "light"], "metric": "f1",
             "value": [dark, light], "lo": [dark - 0.1, light - 0.1], "hi": [dark + 0.1, light + 0.1]}
        )  # fmt: skip

    by_group = pd.concat([f1("erm", 0.5, 0.8), f1("resample", 0.6, 0.7), f1("spare", 0.55, 0.9)])
    ablation = pd.DataFrame({"variant": ["spare", "binary"], "metric": "f1", "value": [0.7, 0.8]})
    sharing = pd.DataFrame({"shared": [0, 0, 2, 2], "of": 4, "value": [0.7, 0.7, 0.6, 0.9]})
    lines = spare.findings(by_group, ablation, sharing)
    assert lines[0].startswith("- **skin**: SPARE F1 dark 0.550 [0.450, 0.650], light 0.900")
    assert "beats ERM for 2 of 2 groups (dark, light) and every baseline for 1." in lines[0]
    assert "**binary**" in lines[1] and "**2** shared stages of 4" in lines[2]
