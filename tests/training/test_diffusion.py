import pytest
import torch

from fairkit.training import DiffusionConfig, train_diffusion

pytestmark = pytest.mark.slow


def test_a_tiny_model_learns(trained_unet):
    _, history = trained_unet
    assert history["loss"].iloc[-30:].mean() < 0.6 * history["loss"].iloc[:10].mean()


def test_resume_gives_the_same_weights(skin16, tiny_unet, tmp_path):
    config = DiffusionConfig(
        steps=6, batch_size=8, checkpoint_dir=str(tmp_path), checkpoint_every=3, progress=False
    )
    whole, _ = train_diffusion(tiny_unet(), skin16, config=config)
    for f in tmp_path.iterdir():
        f.unlink()
    first = DiffusionConfig(**{**config.__dict__, "steps": 3})
    train_diffusion(tiny_unet(), skin16, config=first)
    resumed, history = train_diffusion(tiny_unet(), skin16, config=config)
    assert len(history) == 6
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)


def test_training_draws_timesteps_from_the_models_schedule(skin16, tiny_unet):
    model = tiny_unet(train_timesteps=50)
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(args[1].max().item()))
    config = DiffusionConfig(steps=8, batch_size=16, progress=False)
    train_diffusion(model, skin16, config=config)
    assert len(seen) == 8 and 40 <= max(seen) < 50
