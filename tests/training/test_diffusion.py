from dataclasses import replace

import pytest
import torch
from diffusers import DDPMScheduler

from fairkit.models import diffusion
from fairkit.training import DiffusionConfig, train_diffusion
from fairkit.training import diffusion as training_diffusion

pytestmark = pytest.mark.slow


def test_a_tiny_model_learns(trained_unet):
    _, history = trained_unet
    assert history["loss"].iloc[-30:].mean() < 0.6 * history["loss"].iloc[:10].mean()


def test_resume_after_kill_gives_the_same_weights(skin16, tiny_unet, tmp_path):
    config = DiffusionConfig(
        steps=6, batch_size=8, checkpoint_dir=str(tmp_path), checkpoint_every=3, progress=False
    )
    whole, _ = train_diffusion(tiny_unet(), skin16, config=DiffusionConfig(steps=6, batch_size=8))
    killed, calls = tiny_unet(), []

    def die_in_step_five(module, args):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt

    killed.register_forward_pre_hook(die_in_step_five)
    with pytest.raises(KeyboardInterrupt):
        train_diffusion(killed, skin16, config=config)
    resumed, history = train_diffusion(tiny_unet(), skin16, config=config)
    assert len(history) == 6
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    ("change", "difference"),
    [({"seed": 1}, "seed: stored 0, now 1"), ({"batch_size": 4}, "batch_size: stored 8, now 4")],
)
def test_a_checkpoint_of_another_run_is_refused(skin16, tiny_unet, tmp_path, change, difference):
    config = DiffusionConfig(steps=2, batch_size=8, checkpoint_dir=str(tmp_path), progress=False)
    train_diffusion(tiny_unet(), skin16, config=config)
    with pytest.raises(ValueError, match="another run") as refused:
        train_diffusion(tiny_unet(), skin16, config=replace(config, **change))
    assert difference in str(refused.value) and str(tmp_path) in str(refused.value)
    overwritten, _ = train_diffusion(
        tiny_unet(), skin16, config=replace(config, **change, resume="overwrite")
    )
    fresh, _ = train_diffusion(
        tiny_unet(), skin16, config=replace(config, **change, checkpoint_dir=None)
    )
    for a, b in zip(fresh.state_dict().values(), overwritten.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_training_draws_timesteps_from_the_models_schedule(skin16, tiny_unet):
    model = tiny_unet(train_timesteps=50)
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(args[1].max().item()))
    config = DiffusionConfig(steps=8, batch_size=16, progress=False)
    train_diffusion(model, skin16, config=config)
    assert len(seen) == 8 and 40 <= max(seen) < 50


def test_a_checkpoint_dir_that_is_a_file_is_refused_before_training(skin16, tiny_unet, tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("")
    model, forwards = tiny_unet(), []
    model.register_forward_pre_hook(lambda module, args: forwards.append(1))
    config = DiffusionConfig(steps=2, batch_size=8, checkpoint_dir=str(taken), progress=False)
    with pytest.raises(NotADirectoryError, match="expected a folder") as refused:
        train_diffusion(model, skin16, config=config)
    assert str(taken) in str(refused.value) and forwards == []


def test_a_velocity_model_learns_the_velocity_and_every_sampler_reads_its_prediction(
    skin16, tiny_unet, monkeypatch
):
    model, asked = tiny_unet(prediction_type="v_prediction"), []

    def target(scheduler, x0, noise, t):
        asked.append(scheduler.config.prediction_type)
        return diffusion.denoising_target(scheduler, x0, noise, t)

    monkeypatch.setattr(training_diffusion, "denoising_target", target)
    train_diffusion(model, skin16, config=DiffusionConfig(steps=2, batch_size=8, progress=False))
    assert asked == ["v_prediction"] * 2
    scheduler = DDPMScheduler(**model.noise_schedule)
    x0, noise = torch.ones(1, 3, 16, 16), torch.zeros(1, 3, 16, 16)
    t = torch.tensor([999])  # all noise: v = sqrt(abar) eps - sqrt(1 - abar) x0 ~ -x0
    velocity = diffusion.denoising_target(scheduler, x0, noise, t)
    assert velocity.mean().item() == pytest.approx(-1.0, abs=0.01)
    assert diffusion.denoising_target(DDPMScheduler(), x0, noise, t) is noise
    for sampler in diffusion.SAMPLERS:
        made = diffusion.make_scheduler(model, sampler)
        assert made.config.prediction_type == "v_prediction", sampler
    with pytest.raises(ValueError, match="predicts the noise; this one predicts 'v_prediction'"):
        diffusion.invert(model, x0, model.conditions.codes(skin16.meta.iloc[:1]))
    with pytest.raises(ValueError, match="prediction_type must be one of"):
        tiny_unet(prediction_type="sample")
