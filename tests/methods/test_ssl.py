import pytest
import torch
from torch import nn

from fairkit import methods
from fairkit.config import settings
from fairkit.experiment import Experiment
from fairkit.methods.ssl import Pretrained, pretrained_encoder, unlabelled_pool
from fairkit.models.classifier import Frozen, backbone, encoder_and_head


@pytest.fixture(scope="module")
def scenario():
    return Experiment("skin", settings("smoke"), seed=2, device="cpu").scenario("under", 0.2)


def _state(module: nn.Module) -> dict:
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_the_linear_probe_leaves_every_encoder_weight_and_buffer_unchanged(scenario):
    method = Pretrained(adaptation="linear_probe", lr=0.05)
    start = method.initial_model(scenario)
    encoder_before = _state(start[0].module)
    head_before = _state(start[1])
    trained = method(scenario).model
    encoder_after = trained[0].module.state_dict()
    assert encoder_before.keys() == encoder_after.keys()
    assert any("running_mean" in k for k in encoder_after)  # BatchNorm statistics included
    for k, v in encoder_before.items():
        assert torch.equal(v, encoder_after[k]), k
    assert any(not torch.equal(v, trained[1].state_dict()[k]) for k, v in head_before.items())


def test_both_adaptations_start_from_the_same_pretrained_encoder_and_fine_tuning_moves_it(scenario):
    weights = pretrained_encoder(scenario.experiment, "same_site")
    fresh, _ = encoder_and_head(scenario.make_model())
    assert any(not torch.equal(v, fresh.state_dict()[k]) for k, v in weights.items())
    tuned = Pretrained(adaptation="fine_tune")
    encoder, _ = encoder_and_head(tuned.initial_model(scenario))
    for k, v in weights.items():
        assert torch.equal(encoder.state_dict()[k], v)
    trained, _ = encoder_and_head(tuned(scenario).model)
    assert any(not torch.equal(trained.state_dict()[k], v) for k, v in weights.items())


def test_the_pools_hold_what_they_say(scenario):
    e = scenario.experiment
    same = unlabelled_pool(e, "same_site", n=150)
    none = unlabelled_pool(e, "no_minority", n=150)
    other = unlabelled_pool(e, "other_site", n=150)
    assert len(same) == len(none) == len(other) == 150
    assert (same.meta["skin_group"] == "dark").any()
    assert not (none.meta["skin_group"] == "dark").any()
    assert set(other.meta["site"]) == {"X"} and "X" not in set(same.meta["site"])


def test_encoder_and_head_share_the_models_modules():
    for name in ("small_cnn", "resnet18"):
        model = backbone(name, in_channels=1, n_classes=2, image_size=16, width=8, seed=0)
        encoder, head = encoder_and_head(model)
        x = torch.rand(4, 1, 16, 16)
        model.eval()
        torch.testing.assert_close(head(encoder(x)), model(x))
        with torch.no_grad():
            head.bias.add_(1.0)
        torch.testing.assert_close(head(encoder(x)), model(x))  # the same parameters


def test_frozen_stays_in_eval_mode_when_its_parent_trains():
    layer = nn.Sequential(Frozen(nn.BatchNorm1d(3)), nn.Linear(3, 1)).train()
    assert not layer[0].training and not layer[0].module.training
    assert all(not p.requires_grad for p in layer[0].parameters())


def test_the_method_is_registered_and_refuses_unknown_settings():
    assert isinstance(methods.get("ssl", adaptation="linear_probe"), Pretrained)
    with pytest.raises(ValueError, match="adaptation"):
        Pretrained(adaptation="prompt_tuning")
    with pytest.raises(ValueError, match="pool"):
        Pretrained(pool="elsewhere")
