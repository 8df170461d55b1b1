"""Vectorised drawing helpers shared by the three image generators (torch, float32, no grad).

Hand-written: pixel grids, soft shapes and banks of fixed random textures (smooth noise, hair-
like strokes, grain). A bank is drawn once per image size from a fixed seed, so a sample's
texture is just an index stored in its metadata: exact counterfactuals stay cheap.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from fairkit import seeds

BANK_SIZE = 64
TEXTURE_SEED = 0  # the banks are part of the generators, the same in every run
RENDER_BATCH = 256  # a few hundred images a batch keep temporaries in cache; thousands spill them


@functools.lru_cache(maxsize=16)
def grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates in [-1, 1], shaped (1, 1, H, W) each (x to the right, y down)."""
    axis = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    return xx[None, None], yy[None, None]


def col(values, dtype=torch.float32) -> torch.Tensor:
    """A per-sample value as a (B, 1, 1, 1) tensor that broadcasts over channels and pixels."""
    return torch.as_tensor(np.asarray(values, dtype=np.float32), dtype=dtype).view(-1, 1, 1, 1)


def rgb(values) -> torch.Tensor:
    """Per-sample colours (B, 3) as a (B, 3, 1, 1) tensor."""
    return torch.as_tensor(np.asarray(values, dtype=np.float32)).view(-1, 3, 1, 1)


def soft_ellipse(xx, yy, cx, cy, ax, ay, softness) -> torch.Tensor:
    """A filled ellipse with a soft edge: 1 inside, 0 outside."""
    d = ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2
    return torch.sigmoid((1 - d) / softness)


def pick(bank: torch.Tensor, index) -> torch.Tensor:
    """Gather bank entries (K, C, H, W) for per-sample indices."""
    idx = torch.as_tensor(np.asarray(index, dtype=np.int64) % bank.shape[0])
    return bank.index_select(0, idx)


def quantise(images: torch.Tensor) -> np.ndarray:
    """Clip to [0, 1] and store as uint8, the way image files hold pixels."""
    return (images.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()


@functools.lru_cache(maxsize=32)
def smooth_bank(size: int, scale: float = 0.12, channels: int = 1) -> torch.Tensor:
    """Smooth zero-mean unit-variance noise fields (K, C, H, W) with blobs about ``scale`` wide."""
    g = seeds.torch_generator(TEXTURE_SEED, "smooth", f"{scale}", channels, size)
    noise = torch.randn(BANK_SIZE, channels, size, size, generator=g)
    sigma = max(scale * size / 2, 0.5)
    radius = int(3 * sigma) + 1
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(t**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    out = F.conv2d(F.pad(noise, (radius, radius, 0, 0), mode="circular"), kernel, groups=channels)
    out = F.conv2d(
        F.pad(out, (0, 0, radius, radius), mode="circular"),
        kernel.transpose(2, 3),
        groups=channels,
    )
    out = out - out.mean(dim=(2, 3), keepdim=True)
    return out / out.std(dim=(2, 3), keepdim=True).clamp_min(1e-6)


@functools.lru_cache(maxsize=16)
def grain_bank(size: int, channels: int = 1) -> torch.Tensor:
    """White noise fields (K, C, H, W), the sensor grain of a device."""
    g = seeds.torch_generator(TEXTURE_SEED, "grain", channels, size)
    return torch.randn(BANK_SIZE, channels, size, size, generator=g)


@functools.lru_cache(maxsize=16)
def stroke_bank(
    size: int, strokes: tuple[int, int] = (6, 16), width: float = 0.012
) -> torch.Tensor:
    """Thin curved strokes (hairs, vessels, tubes) as masks (K, 1, H, W) in [0, 1]."""
    g = seeds.torch_generator(TEXTURE_SEED, "stroke", f"{strokes}{width}", size)
    xx, yy = grid(size)
    t = torch.linspace(0, 1, 96).view(-1, 1, 1)
    width = max(width, 0.8 / size)
    masks = []
    for _ in range(BANK_SIZE):
        count = int(torch.randint(strokes[0], strokes[1] + 1, (1,), generator=g))
        p = torch.rand(count, 3, 2, generator=g) * 2.4 - 1.2  # start, control, end points
        pts = (
            ((1 - t) ** 2)[..., None] * p[:, 0]
            + (2 * (1 - t) * t)[..., None] * p[:, 1]
            + (t**2)[..., None] * p[:, 2]
        ).reshape(-1, 2)
        d2 = (xx[0, 0, None] - pts[:, 0, None, None]) ** 2 + (
            yy[0, 0, None] - pts[:, 1, None, None]
        ) ** 2
        masks.append(torch.exp(-d2.min(dim=0).values / (2 * width**2)))
    return torch.stack(masks)[:, None]


def radius(size: int) -> torch.Tensor:
    """Distance of every pixel from the image centre, (1, 1, H, W)."""
    xx, yy = grid(size)
    return torch.sqrt(xx**2 + yy**2)


def render_in_batches(render_batch, table, size: int) -> np.ndarray:
    """Call ``render_batch(rows, size)`` on slices of ``table`` and stack the uint8 results."""
    parts = [
        render_batch(table.iloc[i : i + RENDER_BATCH], size)
        for i in range(0, len(table), RENDER_BATCH)
    ]
    return np.concatenate(parts) if parts else np.empty((0,), dtype=np.uint8)
