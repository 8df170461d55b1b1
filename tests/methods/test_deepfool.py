import copy

import numpy as np
import torch
from torch import nn
from torch.fx.experimental.optimization import fuse

from fairkit.methods import deepfool
from fairkit.models import backbone


def linear(d_in, n_classes, seed=0):
    torch.manual_seed(seed)
    return nn.Linear(d_in, n_classes).double()


def test_binary_distance_is_the_analytic_one():
    model = linear(20, 2)
    x = torch.randn(64, 20, dtype=torch.float64)
    w = model.weight[1] - model.weight[0]
    b = model.bias[1] - model.bias[0]
    exact = ((x @ w + b).abs() / w.norm()).detach().numpy()
    found = deepfool.deepfool(model, x, batch_size=16)
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
    found = deepfool.deepfool_distance(model, x, candidates=4)
    np.testing.assert_allclose(found, exact, rtol=1e-4)


def test_few_candidates_never_undershoot_the_exact_distance():
    """With fewer candidates DeepFool may step to a farther boundary, never a nearer one."""
    model = linear(12, 5, seed=1)
    x = torch.randn(100, 12, dtype=torch.float64)
    all_classes = deepfool.deepfool_distance(model, x, candidates=4)
    top1 = deepfool.deepfool_distance(model, x, candidates=1)
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
    found = deepfool.deepfool(model, x, candidates=2, max_iter=50)
    with torch.no_grad():
        before, after = model(x).argmax(1), model(x + found.perturbation).argmax(1)
    assert found.converged.all()
    assert (before != after).all()
    assert (found.distance > 0).all()


def test_batched_and_one_by_one_agree_and_converged_inputs_stop():
    model = relu_net(2, seed=1)
    x = torch.rand(24, 3, 8, 8, dtype=torch.float64)
    batched = deepfool.deepfool(model, x, batch_size=24)
    single = [deepfool.deepfool(model, x[i : i + 1]) for i in range(len(x))]
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
        deepfool.deepfool_distance(folded, x), deepfool.deepfool_distance(model, x), rtol=1e-9
    )


def test_model_state_is_restored():
    model = backbone("small_cnn", in_channels=1, n_classes=2, image_size=16, width=4).train()
    deepfool.deepfool(model, torch.rand(4, 1, 16, 16))
    assert model.training and all(p.requires_grad for p in model.parameters())


def test_targeted_distance_is_zero_for_inputs_already_in_the_target():
    model = linear(6, 3, seed=2)
    x = torch.randn(50, 6, dtype=torch.float64)
    predicted = model(x).argmax(1).numpy()
    d = deepfool.deepfool_distance(model, x, target=1)
    assert (d[predicted == 1] == 0).all() and (d[predicted != 1] > 0).all()
