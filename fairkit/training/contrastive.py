"""Self-supervised pretraining of a classifier's encoder: SimCLR (Chen et al. 2020).

Two random views of each unlabelled image are pulled together and pushed away from the other
images of the batch by the normalised-temperature cross-entropy (NT-Xent, Chen et al. 2020,
eq. 1). The loss and the projection head are lightly's, the views torchvision's transforms;
this module only wires them into the study's step loop (``fairkit.training.steps``: warm-up,
checkpoints that resume to the same weights, progress).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch
from accelerate import Accelerator
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead
from torch import nn
from torchvision.transforms import v2

from fairkit import seeds
from fairkit.data import Cohort, as_tensor
from fairkit.training.steps import check_resume, run_steps


@dataclass
class ContrastiveConfig:
    """How to pretrain; every field has the value a quick run would use.

    SimCLR keeps no running average of the weights: ``ema_decay`` 0 hands the step loop's
    EMA the current weights at every step.
    """

    steps: int = 300
    batch_size: int = 64
    lr: float = 1e-2
    warmup_steps: int = 30
    temperature: float = 0.5  # NT-Xent's tau; 0.5 is SimCLR's choice for CIFAR-sized images
    # Milder than SimCLR's (0.08-1 crops, 0.8 jitter): a lesion's colour and size are the
    # finding here. Chosen by the linear probe's validation AUROC, never by a fairness number
    # (skin, seed 0, 100 steps: 0.62, against 0.56 with crops from 0.4 and jitter 0.4 and 0.54
    # with crops from 0.9 and none; 300 steps of 64 at lr 1e-2 then gave 0.85).
    crop_scale: tuple[float, float] = (0.7, 1.0)
    jitter: float = 0.1  # brightness and contrast; hue is left alone (it carries skin tone)
    ema_decay: float = 0.0
    seed: int = 0
    device: str = "cpu"
    mixed_precision: str = "no"
    channels_last: bool = True
    compile: bool = False
    checkpoint_dir: str | None = None
    checkpoint_every: int = 100
    progress: bool = True
    resume: str = "check"

    def __post_init__(self):
        check_resume(self.resume)
        if self.batch_size < 2:
            raise ValueError(f"NT-Xent needs at least 2 images a batch; got {self.batch_size}")
        if not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < lo <= hi <= 1; got {self.crop_scale}")


class SimCLR(nn.Module):
    """An encoder and lightly's projection head; the head is dropped after pretraining."""

    def __init__(self, encoder: nn.Module, *, features: int):
        super().__init__()
        self.encoder = encoder
        self.projection = SimCLRProjectionHead(features, features, features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Projections of a batch of images, (B, features)."""
        return self.projection(self.encoder(x))


def views(image_size: int, config: ContrastiveConfig) -> v2.Compose:
    """SimCLR's augmentations for small images: crop and resize, flip, brightness/contrast.

    Blur is left out, as SimCLR does on 32-px CIFAR images (and it costs 40x the rest here).
    """
    return v2.Compose(
        [
            v2.RandomResizedCrop(image_size, scale=config.crop_scale, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomApply([v2.ColorJitter(config.jitter, config.jitter)], p=0.8),
        ]
    )


def two_views(x: torch.Tensor, augment: v2.Compose, *, generator_seed: int) -> torch.Tensor:
    """Two independent views of every image, (2B, C, H, W): each image drawn its own way.

    torchvision's transforms draw one setting per call, so they run image by image; the draws
    come from a seed, so a resumed run augments as an uninterrupted one.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(generator_seed)
        first = torch.stack([augment(image) for image in x])
        second = torch.stack([augment(image) for image in x])
    return torch.cat([first, second])


def pretrain(
    encoder: nn.Module, pool: Cohort, *, features: int, config: ContrastiveConfig
) -> tuple[nn.Module, pd.DataFrame]:
    """Pretrain ``encoder`` on ``pool``'s images (labels unused) with SimCLR; return it and the history.

    Args:
        encoder: maps (B, C, H, W) floats in [0, 1] to (B, features); trained in place.
        pool: the unlabelled images.
        features: the encoder's output width.
        config: the loop's settings.

    Returns:
        The encoder in eval mode, and one history row per step (``step``, ``loss``).
    """
    if len(pool) < config.batch_size:
        raise ValueError(
            f"the pretraining pool has {len(pool)} images, fewer than one batch of "
            f"{config.batch_size}"
        )
    torch.manual_seed(seeds.stream(config.seed, "contrastive training"))
    x_all = as_tensor(pool.images)
    augment = views(pool.images.shape[-1], config)
    criterion = NTXentLoss(temperature=config.temperature)
    model = SimCLR(encoder, features=features)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    compiled = {}

    def step_loss(model: nn.Module, step: int, accelerator: Accelerator):
        generator = seeds.torch_generator(config.seed, "contrastive batch", step)
        idx = torch.randperm(len(x_all), generator=generator)[: config.batch_size]
        both = two_views(
            x_all[idx], augment, generator_seed=seeds.stream(config.seed, "views", step)
        ).to(accelerator.device)
        if config.channels_last:
            both = both.contiguous(memory_format=torch.channels_last)
        if config.compile and "model" not in compiled:
            compiled["model"] = torch.compile(model)
        with accelerator.autocast():
            z = compiled.get("model", model)(both).float()
        first, second = z.chunk(2)
        return criterion(first, second), {}

    model, history = run_steps(
        model,
        config,
        desc="contrastive",
        identity_data={"pool": pool},
        step_loss=step_loss,
    )
    return model.encoder.eval(), history
