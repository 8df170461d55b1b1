import lightly.loss
import numpy as np
import pytest
import torch

from fairkit.data import synth
from fairkit.models.classifier import backbone, encoder_and_head
from fairkit.training import contrastive
from fairkit.training.contrastive import ContrastiveConfig, pretrain, two_views, views


@pytest.fixture(scope="module")
def pool():
    return synth.generate("mri", 96, seed=3, image_size=16)


def _encoder():
    model = backbone("small_cnn", in_channels=1, n_classes=2, image_size=16, width=4, seed=0)
    return encoder_and_head(model)


def _config(**changes):
    base = ContrastiveConfig(steps=4, batch_size=16, warmup_steps=1, progress=False)
    return ContrastiveConfig(**{**base.__dict__, **changes})


def test_the_loss_is_lightlys_nt_xent_called_once_a_step(pool, monkeypatch):
    assert contrastive.NTXentLoss is lightly.loss.NTXentLoss  # imported, not re-written
    calls = []

    class Spy(lightly.loss.NTXentLoss):
        def forward(self, first, second):
            calls.append((first.shape, second.shape, self.temperature))
            return super().forward(first, second)

    monkeypatch.setattr(contrastive, "NTXentLoss", Spy)
    encoder, head = _encoder()
    _, history = pretrain(encoder, pool, features=head.in_features, config=_config(temperature=0.3))
    assert len(calls) == 4 and len(history) == 4
    assert calls[0] == (torch.Size([16, head.in_features]),) * 2 + (0.3,)


def test_pretraining_moves_the_encoder_and_lowers_the_loss_on_a_fixed_batch(pool):
    encoder, head = _encoder()
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    encoder, history = pretrain(encoder, pool, features=head.in_features,
                                config=_config(steps=30, batch_size=32, lr=1e-2))  # fmt: skip
    changed = [k for k, v in encoder.state_dict().items() if not torch.equal(v, before[k])]
    assert changed
    assert history["loss"].iloc[-5:].mean() < history["loss"].iloc[:5].mean()


def test_each_image_gets_its_own_views_drawn_from_the_seed():
    x = torch.rand(1, 1, 16, 16).repeat(8, 1, 1, 1)  # eight copies of one image
    augment = views(16, _config())
    a = two_views(x, augment, generator_seed=1)
    assert a.shape == (16, 1, 16, 16)
    assert len({tuple(v.flatten()[:32].tolist()) for v in a}) > 8  # not one draw for the batch
    assert torch.equal(a, two_views(x, augment, generator_seed=1))
    assert not torch.equal(a, two_views(x, augment, generator_seed=2))


def test_an_interrupted_run_resumes_to_the_same_weights(pool, tmp_path, monkeypatch):
    full, head = _encoder()
    full, _ = pretrain(full, pool, features=head.in_features, config=_config())
    config = _config(checkpoint_dir=str(tmp_path / "ckpt"), checkpoint_every=2)
    original, calls = contrastive.two_views, []

    def crash_at_step_three(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(contrastive, "two_views", crash_at_step_three)
    with pytest.raises(KeyboardInterrupt):
        pretrain(_encoder()[0], pool, features=head.in_features, config=config)
    monkeypatch.setattr(contrastive, "two_views", original)
    resumed, _ = pretrain(_encoder()[0], pool, features=head.in_features, config=config)
    for k, v in full.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), resumed.state_dict()[k].numpy())
    with pytest.raises(ValueError, match="another run"):  # other settings, same folder
        pretrain(_encoder()[0], pool, features=head.in_features,
                 config=_config(checkpoint_dir=config.checkpoint_dir, temperature=0.2))  # fmt: skip


def test_bad_settings_are_refused_before_training(pool):
    with pytest.raises(ValueError, match="at least 2"):
        ContrastiveConfig(batch_size=1)
    with pytest.raises(ValueError, match="crop_scale"):
        ContrastiveConfig(crop_scale=(0.9, 0.5))
    encoder, head = _encoder()
    with pytest.raises(ValueError, match="fewer than one batch"):
        pretrain(encoder, pool.subset(np.arange(8)), features=head.in_features, config=_config())
