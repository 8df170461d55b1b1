"""A conditional pixel-space diffusion model: diffusers' UNet2DModel given attribute embeddings.

Each conditioning attribute (diagnosis, skin type, sex, age group, ...) has its own embedding
table with one extra *null* row; their sum enters the UNet through its identity class
embedding. Dropping each attribute to null during training (condition dropout) gives one model
that is both conditional and unconditional, for classifier-free guidance (Ho & Salimans 2022).
Training follows the classifier loop's conventions: accelerate for device and precision,
safetensors checkpoints that resume, tqdm, a seeded generator per epoch. EMA weights come from
diffusers' ``EMAModel``; schedulers (DDPM, DDIM, DPM-Solver++) from diffusers.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from diffusers import (
    DDIMInverseScheduler,
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    UNet2DModel,
)
from diffusers.training_utils import EMAModel
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from fairkit.data import Cohort
from fairkit.io import write_atomic
from fairkit.train import as_tensor, load_training_state, make_accelerator, save_training_state

SAMPLERS = ("ddpm", "ddim", "dpmsolver")


class ConditionEncoder(nn.Module):
    """Sum of one embedding per attribute; index ``len(values)`` of each table is *null*."""

    def __init__(self, vocabulary: dict[str, tuple], dim: int):
        super().__init__()
        self.vocabulary = {
            name: tuple(str(v) for v in values) for name, values in vocabulary.items()
        }
        self.tables = nn.ModuleDict(
            {name: nn.Embedding(len(values) + 1, dim) for name, values in self.vocabulary.items()}
        )

    @property
    def null(self) -> torch.Tensor:
        """The codes of "no condition" for every attribute, shape (attributes,)."""
        return torch.tensor([len(v) for v in self.vocabulary.values()])

    def codes(self, meta: pd.DataFrame) -> torch.Tensor:
        """Integer codes (N, attributes) of each row's attribute values; unknown values refused."""
        columns = []
        for name, values in self.vocabulary.items():
            if name not in meta:
                raise KeyError(f"condition {name!r} is not a metadata column")
            index = {v: k for k, v in enumerate(values)}
            found = meta[name].astype(str)
            unknown = sorted(set(found) - set(index))
            if unknown:
                raise ValueError(f"{name}: values {unknown} were not seen in training ({values})")
            columns.append(found.map(index).to_numpy())
        return torch.as_tensor(np.stack(columns, axis=1), dtype=torch.long)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """The summed embedding (B, dim) of codes (B, attributes)."""
        return sum(table(codes[:, k]) for k, table in enumerate(self.tables.values()))


class ConditionalUNet(nn.Module):
    """Predicts the noise of a noisy image given its timestep and attribute codes."""

    def __init__(
        self,
        *,
        vocabulary: dict[str, tuple],
        image_size: int,
        channels: int,
        block_out_channels=(32, 64, 64),
        layers_per_block: int = 1,
        attention: bool = False,
    ):
        super().__init__()
        down = "AttnDownBlock2D" if attention else "DownBlock2D"
        up = "AttnUpBlock2D" if attention else "UpBlock2D"
        levels = len(block_out_channels)
        self.unet = UNet2DModel(
            sample_size=image_size,
            in_channels=channels,
            out_channels=channels,
            block_out_channels=tuple(block_out_channels),
            layers_per_block=layers_per_block,
            down_block_types=("DownBlock2D",) * (levels - 1) + (down,),
            up_block_types=(up,) + ("UpBlock2D",) * (levels - 1),
            class_embed_type="identity",
            norm_num_groups=min(8, block_out_channels[0]),
            add_attention=attention,
        )
        self.conditions = ConditionEncoder(vocabulary, 4 * block_out_channels[0])
        self.spec = {
            "vocabulary": {k: list(v) for k, v in self.conditions.vocabulary.items()},
            "image_size": image_size,
            "channels": channels,
            "block_out_channels": list(block_out_channels),
            "layers_per_block": layers_per_block,
            "attention": attention,
        }

    def forward(self, x: torch.Tensor, t: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Predicted noise, shaped like ``x``."""
        return self.unet(x, t, class_labels=self.conditions(codes)).sample

    def save(self, path: str | Path) -> None:
        """Weights to ``path`` (safetensors) with the architecture in its metadata."""
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        write_atomic(
            Path(path),
            lambda tmp: save_file(tensors, str(tmp), metadata={"spec": json.dumps(self.spec)}),
        )

    @classmethod
    def load(cls, path: str | Path) -> ConditionalUNet:
        """A model saved by ``save``."""
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            spec = json.loads(handle.metadata()["spec"])
        model = cls(**spec)
        model.load_state_dict(load_file(str(path)))
        return model.eval()


def to_model_range(images: np.ndarray) -> torch.Tensor:
    """uint8 images as floats in [-1, 1], the diffusion model's range."""
    return as_tensor(images) * 2 - 1


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Model-range images back to uint8 (N, C, H, W)."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()


# --------------------------------------------------------------------------- training


@dataclass
class DiffusionConfig:
    """How to train the diffusion model."""

    steps: int = 2000
    batch_size: int = 64
    lr: float = 2e-3
    condition_dropout: float = 0.15
    ema_decay: float = 0.995
    train_timesteps: int = 1000
    seed: int = 0
    device: str = "cpu"
    mixed_precision: str = "no"
    checkpoint_dir: str | None = None
    checkpoint_every: int = 500
    progress: bool = True


def noise_scheduler(config: DiffusionConfig) -> DDPMScheduler:
    """The training noise schedule (cosine, epsilon prediction)."""
    return DDPMScheduler(
        num_train_timesteps=config.train_timesteps, beta_schedule="squaredcos_cap_v2"
    )


def train_diffusion(
    model: ConditionalUNet, cohort: Cohort, *, config: DiffusionConfig
) -> tuple[ConditionalUNet, pd.DataFrame]:
    """Train by noise prediction; return the EMA model (eval mode) and the loss history.

    Each attribute is dropped to its null code independently with ``condition_dropout``.
    Checkpoints (model, EMA, optimizer, step) resume to the same final weights.
    """
    torch.manual_seed(config.seed)
    accelerator = make_accelerator(config)
    device = accelerator.device
    x_all = to_model_range(cohort.images)
    codes_all = model.conditions.codes(cohort.meta)
    null = model.conditions.null
    scheduler = noise_scheduler(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / 100)
    )
    ema = EMAModel(model.parameters(), decay=config.ema_decay)
    model, optimizer = accelerator.prepare(model, optimizer)
    start, history = 0, []
    last = Path(config.checkpoint_dir) / "last.safetensors" if config.checkpoint_dir else None
    if last is not None and last.exists():
        start, history = _resume(last, accelerator.unwrap_model(model), ema, optimizer, lr_schedule)
    ema.to(device)
    bar = tqdm(
        total=config.steps,
        initial=start,
        desc="diffusion",
        unit="step",
        disable=not config.progress,
    )
    for step in range(start, config.steps):
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
        idx = torch.randint(len(x_all), (config.batch_size,), generator=generator)
        x0, codes = x_all[idx].to(device), codes_all[idx].clone()
        drop = torch.rand(codes.shape, generator=generator) < config.condition_dropout
        codes = torch.where(drop, null.expand_as(codes), codes).to(device)
        noise = torch.randn(x0.shape, generator=generator).to(device)
        t = torch.randint(config.train_timesteps, (len(x0),), generator=generator).to(device)
        with accelerator.autocast():
            predicted = model(scheduler.add_noise(x0, noise, t), t, codes)
        loss = nn.functional.mse_loss(predicted.float(), noise)
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        optimizer.step()
        lr_schedule.step()
        ema.step(accelerator.unwrap_model(model).parameters())
        history.append({"step": step, "loss": loss.item()})
        bar.update()
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if last is not None and (
            (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps
        ):
            _checkpoint(
                last,
                accelerator.unwrap_model(model),
                ema,
                optimizer,
                lr_schedule,
                step + 1,
                history,
                config,
            )
    bar.close()
    model = accelerator.unwrap_model(model)
    ema.copy_to(model.parameters())
    return model.eval(), pd.DataFrame(history)


def _checkpoint(path, model, ema, optimizer, lr_schedule, step, history, config) -> None:
    """The loop's checkpoint plus the EMA weights, step, loss history and config."""
    save_training_state(
        path,
        model,
        optimizer,
        lr_schedule,
        tensors={
            f"ema.{k}": p.detach().cpu().contiguous() for k, p in enumerate(ema.shadow_params)
        },
        metadata={
            "step": str(step),
            "history": json.dumps(history),
            "ema_steps": str(ema.optimization_step),
            "config": json.dumps(asdict(config)),
        },
    )


def _resume(path, model, ema, optimizer, lr_schedule):
    tensors, metadata = load_training_state(path, model, optimizer, lr_schedule)
    for k, p in enumerate(ema.shadow_params):
        p.data.copy_(tensors[f"ema.{k}"])
    ema.optimization_step = int(metadata["ema_steps"])
    return int(metadata["step"]), json.loads(metadata["history"])


# --------------------------------------------------------------------------- sampling


def make_scheduler(name: str, *, clip: bool = True, train_timesteps: int = 1000):
    """A diffusers sampler with the training noise schedule: ddpm, ddim or dpmsolver (++).

    ``clip`` keeps each step's predicted clean image in [-1, 1] (DPM-Solver++ by dynamic
    thresholding): near t = T the cosine schedule's signal is ~0, and an unclipped estimate of
    the clean image explodes there. Regeneration from an inversion leaves it off, to mirror the
    unclipped inversion.
    """
    common = {"num_train_timesteps": train_timesteps, "beta_schedule": "squaredcos_cap_v2"}
    if name == "ddpm":
        return DDPMScheduler(**common, clip_sample=clip)
    if name == "ddim":
        return DDIMScheduler(**common, clip_sample=clip, set_alpha_to_one=False)
    if name == "dpmsolver":
        return DPMSolverMultistepScheduler(
            **common,
            algorithm_type="dpmsolver++",
            solver_order=2,
            thresholding=clip,
            sample_max_value=1.0,
        )
    raise ValueError(f"sampler must be one of {SAMPLERS}; got {name!r}")


def guided_noise(model, x, t, codes, guidance: float) -> torch.Tensor:
    """Classifier-free guidance: eps_u + g (eps_c - eps_u), both halves in one batched call."""
    if guidance == 1.0:
        return model(x, t, codes)
    null = model.conditions.null.to(codes.device).expand_as(codes)
    both = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([codes, null]))
    conditional, unconditional = both.chunk(2)
    return unconditional + guidance * (conditional - unconditional)


@torch.no_grad()
def sample(
    model: ConditionalUNet,
    codes: torch.Tensor,
    *,
    sampler: str = "ddim",
    steps: int = 50,
    guidance: float = 2.0,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
    clip: bool = True,
    batch_size: int = 256,
    progress: bool = False,
) -> torch.Tensor:
    """Images in [-1, 1] for the given attribute codes (N, attributes).

    The denoising loop is written out: at each timestep predict the (guided) noise and let the
    scheduler take its step. ``noise`` starts from given latents instead of fresh noise.
    """
    device = next(model.parameters()).device
    spec = model.spec
    shape = (len(codes), spec["channels"], spec["image_size"], spec["image_size"])
    x = noise if noise is not None else torch.randn(shape, generator=generator)
    out = []
    for start in tqdm(range(0, len(codes), batch_size), desc="sampling", disable=not progress):
        part = x[start : start + batch_size].to(device)
        c = codes[start : start + batch_size].to(device)
        scheduler = make_scheduler(sampler, clip=clip)
        scheduler.set_timesteps(steps)
        for t in scheduler.timesteps:
            eps = guided_noise(model, part, t.to(device).expand(len(part)), c, guidance)
            part = scheduler.step(eps, t, part, generator=generator).prev_sample
        out.append(part.cpu())
    return torch.cat(out)


@torch.no_grad()
def invert(
    model: ConditionalUNet, x0: torch.Tensor, codes: torch.Tensor, *, steps: int = 50
) -> torch.Tensor:
    """DDIM inversion: the noise that deterministic DDIM sampling maps back to ``x0``.

    Run under the factual ``codes`` without guidance, it is the abduction step of a
    counterfactual: the image's exogenous noise.
    """
    device = next(model.parameters()).device
    scheduler = DDIMInverseScheduler(
        num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", clip_sample=False
    )
    scheduler.set_timesteps(steps)
    x, codes = x0.to(device), codes.to(device)
    for t in scheduler.timesteps:
        eps = model(x, t.to(device).expand(len(x)), codes)
        x = scheduler.step(eps, t, x).prev_sample
    return x.cpu()
