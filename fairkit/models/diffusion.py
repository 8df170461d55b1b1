"""A conditional pixel-space diffusion model: diffusers' UNet2DModel given attribute embeddings.

Each conditioning attribute (diagnosis, skin type, sex, age group, ...) has its own embedding
table with one extra *null* row; their sum enters the UNet through its identity class
embedding. Dropping each attribute to null during training (condition dropout) gives one model
that is both conditional and unconditional, for classifier-free guidance (Ho & Salimans 2022).
The model is a diffusers model: its config holds the architecture, the conditions and the
noise schedule it was trained with, and ``save_pretrained``/``from_pretrained`` write and read
a folder (config.json and safetensors weights). Sampling and DDIM inversion use diffusers'
schedulers (DDPM, DDIM, DPM-Solver++) with that schedule. Training lives in
``fairkit.training.diffusion``.
"""

from __future__ import annotations

import os

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
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn
from tqdm.auto import tqdm

from fairkit.data import as_tensor

SAMPLERS = ("ddpm", "ddim", "dpmsolver", "dpmsolver_sde")


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


PREDICTIONS = ("epsilon", "v_prediction")


class ConditionalUNet(ModelMixin, ConfigMixin):
    """Predicts the noise of a noisy image given its timestep and attribute codes.

    Args:
        vocabulary: each conditioning attribute's values, e.g. ``{"sex": ("F", "M")}``, or the
            same as (name, values) pairs, the form the config keeps (JSON sorts a dict's keys,
            and the order of the attributes is the order of the code columns).
        image_size: height and width of the images.
        channels: image channels.
        block_out_channels: the UNet's widths, one per resolution.
        layers_per_block: ResNet layers per UNet block.
        attention: self-attention at the lowest resolution.
        train_timesteps: length of the noise schedule the model is trained and sampled with.
        beta_schedule: diffusers' name of that schedule (cosine by default).
        prediction_type: what the network predicts, diffusers' name: ``epsilon`` (the noise)
            or ``v_prediction`` (the velocity, Salimans & Ho 2022, eq. 11). Chapter 5's
            generators predict v: predicting the noise, their images at 32 px ignored the
            group's colour (the global colour is set at high noise, where a noise error weighs
            nothing); chapter 4's predict the noise, which its inversion needs.
    """

    @register_to_config
    def __init__(
        self,
        *,
        vocabulary: dict[str, tuple] | list[tuple[str, tuple]],
        image_size: int,
        channels: int,
        block_out_channels: tuple[int, ...] = (32, 64, 64),
        layers_per_block: int = 1,
        attention: bool = False,
        train_timesteps: int = 1000,
        beta_schedule: str = "squaredcos_cap_v2",
        prediction_type: str = "epsilon",
    ):
        super().__init__()
        if prediction_type not in PREDICTIONS:
            raise ValueError(
                f"prediction_type must be one of {PREDICTIONS}; got {prediction_type!r}"
            )
        vocabulary = dict(vocabulary)
        self.register_to_config(vocabulary=[[k, list(v)] for k, v in vocabulary.items()])
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

    @property
    def noise_schedule(self) -> dict:
        """The noise schedule as keyword arguments of a diffusers scheduler."""
        return {
            "num_train_timesteps": self.config.train_timesteps,
            "beta_schedule": self.config.beta_schedule,
            "prediction_type": self.config.prediction_type,
        }

    def forward(self, x: torch.Tensor, t: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """The predicted noise (or velocity: ``prediction_type``), shaped like ``x``."""
        return self.unet(x, t, class_labels=self.conditions(codes)).sample

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, **kwargs) -> ConditionalUNet:
        """A model written by ``save_pretrained(folder)``, in eval mode; other models refused.

        Args:
            folder: a local folder with ``config.json`` and the weights.
            **kwargs: passed to diffusers' ``ModelMixin.from_pretrained``.
        """
        found = cls.load_config(folder).get("_class_name")
        if found != cls.__name__:
            raise ValueError(f"{folder} holds a {found}, not a {cls.__name__}")
        return super().from_pretrained(folder, **kwargs)


def denoising_target(scheduler, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor):
    """What the network should output for ``x0`` noised by ``noise`` at ``t``.

    The noise, or the velocity when the scheduler (made from a model's ``noise_schedule``)
    says the model predicts v (Salimans & Ho 2022, eq. 11).
    """
    if scheduler.config.prediction_type == "v_prediction":
        return scheduler.get_velocity(x0, noise, t)
    return noise


def to_model_range(images: np.ndarray) -> torch.Tensor:
    """uint8 images as floats in [-1, 1], the diffusion model's range."""
    return as_tensor(images) * 2 - 1


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Model-range images back to uint8 (N, C, H, W)."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()


# --------------------------------------------------------------------------- sampling


def make_scheduler(model: ConditionalUNet, name: str, *, clip: bool = True):
    """A diffusers sampler with the model's noise schedule: ddpm, ddim, dpmsolver or dpmsolver_sde.

    ``dpmsolver`` is DPM-Solver++(2M), a solver of the probability-flow ODE; ``dpmsolver_sde``
    is its SDE form, SDE-DPM-Solver++(2M) (Lu et al. 2022), which like DDPM solves the reverse
    SDE and so draws fresh noise at each step. On chapter 5's small generators the ODE, even
    solved almost exactly (DDIM 1000 steps), shows the intended group far less often than
    DDPM's reverse SDE; the SDE form at 20 steps shows no detectable difference from DDPM, its
    interval only just reaching zero (``benchmarks/fairgen.py``).

    ``clip`` keeps each step's predicted clean image in [-1, 1] (DPM-Solver++ by dynamic
    thresholding): near t = T the cosine schedule's signal is ~0, and an unclipped estimate of
    the clean image explodes there. Regeneration from an inversion leaves it off, to mirror the
    unclipped inversion.
    """
    common = model.noise_schedule
    if name == "ddpm":
        return DDPMScheduler(**common, clip_sample=clip)
    if name == "ddim":
        return DDIMScheduler(**common, clip_sample=clip, set_alpha_to_one=False)
    if name in ("dpmsolver", "dpmsolver_sde"):
        return DPMSolverMultistepScheduler(
            **common,
            algorithm_type="dpmsolver++" if name == "dpmsolver" else "sde-dpmsolver++",
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


def batch_for(device: torch.device | str) -> int:
    """Images per network call in sampling and inversion: 64 on a CPU, 256 on an accelerator.

    On a CPU small calls stay in cache: a 32-px UNet call of 64 images costs ~1.6 ms an image,
    one of 512 (256 guided images) ~2.9 ms (``benchmarks/counterfactuals.py``).
    """
    return 64 if torch.device(device).type == "cpu" else 256


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
    batch_size: int | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Images in [-1, 1] for the given attribute codes (N, attributes).

    The denoising loop is written out: at each timestep predict the (guided) noise and let the
    scheduler take its step. ``noise`` starts from given latents instead of fresh noise.
    ``batch_size`` counts network inputs (guidance doubles each image); default ``batch_for``.
    """
    device = model.device
    size = model.config.image_size
    shape = (len(codes), model.config.channels, size, size)
    x = noise if noise is not None else torch.randn(shape, generator=generator)
    per_call = max(1, (batch_size or batch_for(device)) // (1 if guidance == 1.0 else 2))
    out = []
    for start in tqdm(range(0, len(codes), per_call), desc="sampling", disable=not progress):
        part = x[start : start + per_call].to(device)
        c = codes[start : start + per_call].to(device)
        scheduler = make_scheduler(model, sampler, clip=clip)
        scheduler.set_timesteps(steps)
        for t in scheduler.timesteps:
            eps = guided_noise(model, part, t.to(device).expand(len(part)), c, guidance)
            part = scheduler.step(eps, t, part, generator=generator).prev_sample
        out.append(part.cpu())
    return torch.cat(out)


@torch.no_grad()
def invert(
    model: ConditionalUNet,
    x0: torch.Tensor,
    codes: torch.Tensor,
    *,
    steps: int = 50,
    batch_size: int | None = None,
) -> torch.Tensor:
    """DDIM inversion: the noise that deterministic DDIM sampling maps back to ``x0``.

    Run under the factual ``codes`` without guidance, it is the abduction step of a
    counterfactual: the image's exogenous noise.
    """
    if model.config.prediction_type != "epsilon":
        raise ValueError(
            f"DDIM inversion needs a model that predicts the noise; this one predicts "
            f"{model.config.prediction_type!r}"
        )
    device = model.device
    size = batch_size or batch_for(device)
    out = []
    for x, c in zip(x0.split(size), codes.split(size), strict=True):
        scheduler = DDIMInverseScheduler(**model.noise_schedule, clip_sample=False)
        scheduler.set_timesteps(steps)
        x, c = x.to(device), c.to(device)
        for t in scheduler.timesteps:
            eps = model(x, t.to(device).expand(len(x)), c)
            x = scheduler.step(eps, t, x).prev_sample
        out.append(x.cpu())
    return torch.cat(out)
