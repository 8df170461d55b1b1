"""Preference alignment of the conditional diffusion model: Diffusion-DPO, its loop and metric.

Diffusion-DPO (Wallace et al. 2023, "Diffusion Model Alignment Using Direct Preference
Optimization", eq. 14) scores a pair of images generated for the same condition, a winner x_w
and a loser x_l, by how much better the model denoises the winner than the loser *relative to a
frozen reference model*, at the same noise and timestep for both:

    L = -log sigmoid(-beta/2 * [(|e - e_theta(x_w)|^2 - |e - e_ref(x_w)|^2)
                                - (|e - e_theta(x_l)|^2 - |e - e_ref(x_l)|^2)])

averaged over pairs (the log-sigmoid of each pair, not of a batch mean). FairGen's public code
uses a reference-free form, which drops the reference terms.

This module holds the objective (``dpo_margins``, ``dpo_loss``), the per-pair denoising errors
(``pair_errors``), the fine-tuning loop (``train_preference``, the diffusion loop's steps with
this loss) and the model's own ranking of a pair (``preference_accuracy``).
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from diffusers import DDPMScheduler
from torch import nn

from fairkit import seeds
from fairkit.data.preferences import checked_pairs
from fairkit.models.diffusion import (
    ConditionalUNet,
    batch_for,
    denoising_target,
    to_model_range,
)
from fairkit.training.steps import check_resume, run_steps

VARIANTS = ("dpo", "reference_free")


def check_objective(*, beta: float, variant: str) -> None:
    """Refuse a variant not in ``VARIANTS`` or a beta that is not > 0."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}; got {variant!r}")
    if not beta > 0:
        raise ValueError(f"beta must be > 0; got {beta!r}")


def dpo_margins(
    model_w: torch.Tensor,
    model_l: torch.Tensor,
    ref_w: torch.Tensor | None = None,
    ref_l: torch.Tensor | None = None,
    *,
    beta: float,
    variant: str = "dpo",
) -> torch.Tensor:
    """Each pair's implicit reward margin, the logit of Diffusion-DPO (Wallace et al. 2023, eq. 14).

    The margin is -beta/2 * [(model_w - ref_w) - (model_l - ref_l)]: positive when the model,
    relative to the reference, denoises the winner better than the loser; zero when the model is
    the reference. The pair's loss is -log sigmoid(margin).

    Args:
        model_w: per-pair squared noise-prediction error of the trained model on the winners (B,).
        model_l: the same on the losers (B,).
        ref_w: the frozen reference model's error on the winners (B,); not for reference_free.
        ref_l: the reference's error on the losers (B,).
        beta: strength of the preference against staying near the reference (> 0).
        variant: ``dpo`` (against the reference) or ``reference_free`` (FairGen's code).

    Returns:
        The margins (B,).
    """
    check_objective(beta=beta, variant=variant)
    margin = model_w - model_l
    if variant == "dpo":
        if ref_w is None or ref_l is None:
            raise ValueError("variant 'dpo' needs the reference's errors ref_w and ref_l")
        margin = margin - (ref_w - ref_l)
    elif ref_w is not None or ref_l is not None:
        raise ValueError("variant 'reference_free' takes no reference errors")
    return -0.5 * beta * margin


def dpo_loss(
    model_w: torch.Tensor,
    model_l: torch.Tensor,
    ref_w: torch.Tensor | None = None,
    ref_l: torch.Tensor | None = None,
    *,
    beta: float,
    variant: str = "dpo",
) -> torch.Tensor:
    """The Diffusion-DPO loss of a batch of pairs, averaged per pair (Wallace et al. 2023, eq. 14).

    Args:
        model_w: per-pair squared noise-prediction error of the trained model on the winners (B,).
        model_l: the same on the losers (B,).
        ref_w: the frozen reference model's error on the winners (B,); not for reference_free.
        ref_l: the reference's error on the losers (B,).
        beta: strength of the preference against staying near the reference (> 0).
        variant: ``dpo`` (against the reference) or ``reference_free`` (FairGen's code).

    Returns:
        The mean over pairs of -log sigmoid(margin), the margins of ``dpo_margins``.
    """
    margins = dpo_margins(model_w, model_l, ref_w, ref_l, beta=beta, variant=variant)
    return -F.logsigmoid(margins).mean()


def pair_errors(
    model: nn.Module,
    x_w: torch.Tensor,
    x_l: torch.Tensor,
    codes: torch.Tensor,
    noise: torch.Tensor,
    t: torch.Tensor,
    *,
    scheduler,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pair mean squared noise-prediction error on the winners and on the losers.

    Winner and loser of a pair share the condition, the noise and the timestep (as the
    objective requires); both halves go through the network in one batched call.

    Args:
        model: predicts the noise of (noisy image, timestep, condition codes).
        x_w: the winners, in the model's range (B, C, H, W).
        x_l: the losers (B, C, H, W).
        codes: the pairs' condition codes (B, attributes).
        noise: the noise added to both images of a pair (B, C, H, W).
        t: the timestep of each pair (B,).
        scheduler: a diffusers scheduler made from the model's ``noise_schedule``: it noises
            the images and says what the network predicts (the noise, or v: the error is then
            v's, a per-timestep reweighting of the same terms).
    """
    x = torch.cat([x_w, x_l])
    noise2, t2 = torch.cat([noise, noise]), torch.cat([t, t])
    predicted = model(scheduler.add_noise(x, noise2, t2), t2, torch.cat([codes, codes]))
    target = denoising_target(scheduler, x, noise2, t2)
    errors = (predicted.float() - target).pow(2).flatten(1).mean(1)
    return errors.chunk(2)


# --------------------------------------------------------------------------- the loop


@dataclass
class PreferenceConfig:
    """How to fine-tune the diffusion model on preference pairs with Diffusion-DPO.

    ``beta`` and ``variant`` are ``dpo_loss``'s; the other fields are the diffusion loop's
    (``DiffusionConfig``), with ``batch_pairs`` pairs (twice as many images) a step.
    """

    steps: int = 200
    batch_pairs: int = 32
    lr: float = 1e-4
    warmup_steps: int = 20
    beta: float = 2000.0
    variant: str = "dpo"
    ema_decay: float = 0.99
    seed: int = 0
    device: str = "cpu"
    mixed_precision: str = "no"
    checkpoint_dir: str | None = None
    checkpoint_every: int = 100
    progress: bool = True
    resume: str = "check"  # or "overwrite": discard a checkpoint of another run, start afresh

    def __post_init__(self):
        check_objective(beta=self.beta, variant=self.variant)
        check_resume(self.resume)


def train_preference(
    model: ConditionalUNet, pairs: pd.DataFrame, images: np.ndarray, *, config: PreferenceConfig
) -> tuple[ConditionalUNet, pd.DataFrame]:
    """Fine-tune by Diffusion-DPO (Wallace et al. 2023, eq. 14); return the EMA model and history.

    The reference is a frozen copy of ``model`` as given (none for ``reference_free``). Each
    step draws ``batch_pairs`` pairs with one noise and one timestep per pair, shared by winner
    and loser. Checkpoints resume to the same final weights; one of another run (other settings,
    pairs, images or starting weights, hence another reference) is refused unless
    ``config.resume="overwrite"``.

    Args:
        model: the model to align (its weights change in place; the EMA weights end in it).
        pairs: the preference pairs (``fairkit.data.preferences``), with a column for each of
            the model's conditions.
        images: the images the pairs index, uint8 (N, C, H, W) at the model's size.
        config: the loop's settings.

    Returns:
        The model with its EMA weights, in eval mode, and one history row per step: ``loss``,
        ``reward_accuracy`` (the fraction of the batch's pairs whose margin favours the winner)
        and ``reward_margin`` (the batch's mean margin, ``dpo_margins``).
    """
    torch.manual_seed(seeds.stream(config.seed, "preference training"))
    checked = _checked(model, pairs, images)
    codes_all = model.conditions.codes(checked)
    winners, losers = checked["winner"].to_numpy(), checked["loser"].to_numpy()
    noising = DDPMScheduler(**model.noise_schedule)
    timesteps = noising.config.num_train_timesteps
    start_weights = weights_fingerprint(model)
    reference = None if config.variant == "reference_free" else frozen_copy(model)
    objective = {"beta": config.beta, "variant": config.variant}

    def step_loss(model: nn.Module, step: int, accelerator: Accelerator):
        device = accelerator.device
        generator = seeds.torch_generator(config.seed, "preference step", step)
        rows = torch.randint(len(checked), (config.batch_pairs,), generator=generator).numpy()
        x_w = to_model_range(images[winners[rows]]).to(device)
        x_l = to_model_range(images[losers[rows]]).to(device)
        codes = codes_all[rows].to(device)
        noise = torch.randn(x_w.shape, generator=generator).to(device)
        t = torch.randint(timesteps, (len(rows),), generator=generator).to(device)
        batch = (x_w, x_l, codes, noise, t)
        with accelerator.autocast():
            model_w, model_l = pair_errors(model, *batch, scheduler=noising)
            ref_w, ref_l = _reference_errors(reference, batch, scheduler=noising)
        loss = dpo_loss(model_w, model_l, ref_w, ref_l, **objective)
        margins = dpo_margins(model_w.detach(), model_l.detach(), ref_w, ref_l, **objective)
        return loss, {
            "reward_accuracy": (margins > 0).float().mean().item(),
            "reward_margin": margins.mean().item(),
        }

    return run_steps(
        model,
        config,
        desc="preference",
        identity_data={"pairs": pairs, "images": images, "start_weights": start_weights},
        step_loss=step_loss,
    )


def frozen_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` that no optimizer moves: no gradients, eval mode."""
    return copy.deepcopy(model).requires_grad_(False).eval()


@torch.no_grad()
def _reference_errors(
    reference: nn.Module | None, batch: tuple[torch.Tensor, ...], *, scheduler
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The reference's ``pair_errors`` on the batch (on the batch's device); None, None if none."""
    if reference is None:
        return None, None
    return pair_errors(reference.to(batch[0].device), *batch, scheduler=scheduler)


def weights_fingerprint(model: nn.Module) -> str:
    """The number of tensors and a SHA-1 of a model's weights (names, shapes, dtypes, bytes)."""
    digest = hashlib.sha1()
    state = model.state_dict()
    for name, tensor in state.items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name} {tuple(tensor.shape)} {tensor.dtype}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return f"{len(state)} tensors, sha1 {digest.hexdigest()[:16]}"


def _checked(model: ConditionalUNet, pairs: pd.DataFrame, images: np.ndarray) -> pd.DataFrame:
    """``pairs`` checked against the schema and the model's conditions; images at its size."""
    size, channels = model.config.image_size, model.config.channels
    if images.ndim != 4 or images.shape[1:] != (channels, size, size):
        raise ValueError(
            f"images must be (N, {channels}, {size}, {size}) for this model; got {images.shape}"
        )
    return checked_pairs(
        pairs, images, conditions=tuple(model.conditions.vocabulary), source="pairs"
    )


# --------------------------------------------------------------------------- the metric


@torch.no_grad()
def preference_accuracy(
    model: ConditionalUNet,
    pairs: pd.DataFrame,
    images: np.ndarray,
    *,
    draws: int = 8,
    seed: int = 0,
) -> np.ndarray:
    """Per pair, how often the model denoises the winner better than the loser.

    The model's own likelihood ranking of a pair: over ``draws`` noises and timesteps, each
    shared by winner and loser, the fraction in which its error on the winner is the lower.
    Unlike the DPO margin (0 when the model is the reference) it is defined before and after
    alignment. A pair's draws depend on ``seed`` and its ``pair_id`` only, so two models, or two
    tables holding the pair, see the same noise for it.

    Args:
        model: the diffusion model, on its device.
        pairs: the preference pairs, with a column for each of the model's conditions.
        images: the images the pairs index, uint8 (N, C, H, W) at the model's size.
        draws: noises and timesteps per pair.
        seed: the run's seed.

    Returns:
        The fractions, one per pair, in ``pairs``' order (float array).
    """
    if draws < 1:
        raise ValueError(f"draws must be at least 1; got {draws}")
    checked = _checked(model, pairs, images)
    codes_all = model.conditions.codes(checked)
    winners, losers = checked["winner"].to_numpy(), checked["loser"].to_numpy()
    pair_ids = checked["pair_id"].to_numpy()
    scheduler = DDPMScheduler(**model.noise_schedule)
    device = model.device
    per_call = max(1, batch_for(device) // 2)  # a call holds a pair's two images
    wins = np.zeros(len(checked))
    for start in range(0, len(checked), per_call):
        rows = np.arange(start, min(start + per_call, len(checked)))
        noise, t = _pair_draws(model, pair_ids[rows], draws=draws, seed=seed)
        x_w = to_model_range(images[winners[rows]]).to(device)
        x_l = to_model_range(images[losers[rows]]).to(device)
        codes = codes_all[rows].to(device)
        for d in range(draws):
            error_w, error_l = pair_errors(
                model, x_w, x_l, codes, noise[:, d], t[:, d], scheduler=scheduler
            )
            wins[rows] += (error_w < error_l).cpu().numpy()
    return wins / draws


def _pair_draws(
    model: ConditionalUNet, pair_ids: np.ndarray, *, draws: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise (pairs, draws, C, H, W) and timesteps (pairs, draws) of the pairs, each its own."""
    size, channels = model.config.image_size, model.config.channels
    noise, t = [], []
    for pair_id in pair_ids:
        generator = seeds.torch_generator(seed, "preference accuracy", str(pair_id))
        noise.append(torch.randn((draws, channels, size, size), generator=generator))
        t.append(torch.randint(model.config.train_timesteps, (draws,), generator=generator))
    return torch.stack(noise).to(model.device), torch.stack(t).to(model.device)
