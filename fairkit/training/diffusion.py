"""Training the conditional diffusion model by noise prediction (Ho et al. 2020, eq. 14).

The loop follows the classifier loop's conventions (``fairkit.training.engine``): accelerate
for device and precision, a warm-up schedule from torch, safetensors checkpoints that resume to
the same final weights, tqdm, a generator seeded per step. EMA weights come from diffusers'
``EMAModel``; the noise schedule is the model's own (``ConditionalUNet.noise_schedule``).

The steps themselves are ``fairkit.training.steps.run_steps``, which the preference
(Diffusion-DPO) and contrastive loops share with their own losses.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import pandas as pd
import torch
from accelerate import Accelerator
from diffusers import DDPMScheduler
from torch import nn

from fairkit import seeds
from fairkit.data import Cohort
from fairkit.models.diffusion import ConditionalUNet, denoising_target, to_model_range
from fairkit.training.steps import check_resume, run_steps


@dataclass
class DiffusionConfig:
    """How to train the diffusion model (its noise schedule is part of the model)."""

    steps: int = 2000
    batch_size: int = 64
    lr: float = 2e-3
    warmup_steps: int = 100
    condition_dropout: float = 0.15
    ema_decay: float = 0.995
    seed: int = 0
    device: str = "cpu"
    mixed_precision: str = "no"
    checkpoint_dir: str | None = None
    checkpoint_every: int = 500
    progress: bool = True
    resume: str = "check"  # or "overwrite": discard a checkpoint of another run, start afresh

    def __post_init__(self):
        check_resume(self.resume)


def train_diffusion(
    model: ConditionalUNet, cohort: Cohort, *, config: DiffusionConfig
) -> tuple[ConditionalUNet, pd.DataFrame]:
    """Train by noise (or velocity) prediction; return the EMA model (eval mode) and the loss history.

    Each attribute is dropped to its null code independently with ``condition_dropout``.
    Checkpoints (model, EMA, optimizer, step) resume to the same final weights; one of another
    run (other settings, model or images) is refused unless ``config.resume="overwrite"``.

    Args:
        model: the model to train (its weights change in place; the EMA weights end in it).
        cohort: the training images and the metadata holding the model's conditions.
        config: the loop's settings.

    Returns:
        The model with its EMA weights, in eval mode, and one history row per step.
    """
    torch.manual_seed(seeds.stream(config.seed, "diffusion training"))
    x_all = to_model_range(cohort.images)
    codes_all = model.conditions.codes(cohort.meta)
    null = model.conditions.null
    noising = DDPMScheduler(**model.noise_schedule)
    timesteps = noising.config.num_train_timesteps
    target = partial(denoising_target, noising)  # the noise, or v (the model's prediction_type)

    def step_loss(model: nn.Module, step: int, accelerator: Accelerator):
        device = accelerator.device
        generator = seeds.torch_generator(config.seed, "diffusion step", step)
        idx = torch.randint(len(x_all), (config.batch_size,), generator=generator)
        x0, codes = x_all[idx].to(device), codes_all[idx].clone()
        drop = torch.rand(codes.shape, generator=generator) < config.condition_dropout
        codes = torch.where(drop, null.expand_as(codes), codes).to(device)
        noise = torch.randn(x0.shape, generator=generator).to(device)
        t = torch.randint(timesteps, (len(x0),), generator=generator).to(device)
        with accelerator.autocast():
            predicted = model(noising.add_noise(x0, noise, t), t, codes)
        return nn.functional.mse_loss(predicted.float(), target(x0, noise, t)), {}

    return run_steps(
        model, config, desc="diffusion", identity_data={"train": cohort}, step_loss=step_loss
    )
