"""The conditional diffusion model: samplers, guidance in one batch, saving and loading, its schedule."""

import numpy as np
import pytest
import torch
from diffusers import UNet2DModel

from fairkit.models import diffusion

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("sampler", diffusion.SAMPLERS)
def test_samplers_give_images_of_the_right_shape_and_range(trained_unet, skin16, sampler):
    model, _ = trained_unet
    codes = model.conditions.codes(skin16.meta.iloc[:4])
    out = diffusion.sample(
        model, codes, sampler=sampler, steps=2, generator=torch.Generator().manual_seed(0)
    )
    assert out.shape == (4, 3, 16, 16) and torch.isfinite(out).all()
    assert diffusion.to_uint8(out).dtype == np.uint8


def test_guidance_in_one_batch_equals_two_calls(trained_unet, skin16):
    model, _ = trained_unet
    codes = model.conditions.codes(skin16.meta.iloc[:4])
    x, t = torch.randn(4, 3, 16, 16), torch.full((4,), 500)
    with torch.no_grad():
        batched = diffusion.guided_noise(model, x, t, codes, 3.0)
        cond = model(x, t, codes)
        uncond = model(x, t, model.conditions.null.expand_as(codes))
    torch.testing.assert_close(batched, uncond + 3.0 * (cond - uncond), rtol=1e-4, atol=1e-5)


def test_save_pretrained_then_from_pretrained_gives_the_same_model(trained_unet, skin16, tmp_path):
    model, _ = trained_unet
    model.save_pretrained(tmp_path / "unet")
    loaded = diffusion.ConditionalUNet.from_pretrained(tmp_path / "unet")
    assert not loaded.training
    assert loaded.config.train_timesteps == model.config.train_timesteps
    assert list(loaded.conditions.vocabulary.items()) == list(model.conditions.vocabulary.items())
    codes = model.conditions.codes(skin16.meta.iloc[:4])
    assert torch.equal(loaded.conditions.codes(skin16.meta.iloc[:4]), codes)
    x, t = torch.randn(4, 3, 16, 16), torch.full((4,), 300)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, t, codes), model(x, t, codes), rtol=0, atol=0)


def test_from_pretrained_refuses_another_model(tmp_path):
    other = UNet2DModel(
        sample_size=8,
        block_out_channels=(8, 8),
        down_block_types=("DownBlock2D",) * 2,
        up_block_types=("UpBlock2D",) * 2,
        norm_num_groups=8,
    )
    other.save_pretrained(tmp_path / "other")
    with pytest.raises(ValueError, match="holds a UNet2DModel, not a ConditionalUNet"):
        diffusion.ConditionalUNet.from_pretrained(tmp_path / "other")


def record_timesteps(model):
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(args[1].max().item()))
    return seen


@pytest.mark.parametrize("sampler", diffusion.SAMPLERS)
def test_sampling_and_inversion_use_the_models_noise_schedule(tiny_unet, skin16, sampler):
    model = tiny_unet(train_timesteps=200).eval()
    seen = record_timesteps(model)
    codes = model.conditions.codes(skin16.meta.iloc[:2])
    generator = torch.Generator().manual_seed(0)
    diffusion.sample(model, codes, sampler=sampler, steps=2, guidance=1.0, generator=generator)
    assert diffusion.make_scheduler(model, sampler).config.num_train_timesteps == 200
    assert len(seen) == 2 and max(seen) < 200 and max(seen) >= 100
    seen.clear()
    diffusion.invert(model, torch.zeros(2, 3, 16, 16), codes, steps=2)
    assert len(seen) == 2 and max(seen) < 200 and max(seen) >= 100
