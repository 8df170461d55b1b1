"""What every training loop shares: device and precision, learning-rate schedules, checkpoints.

Each loop (the classifier's, the diffusion model's; preference (DPO) and contrastive loops
to come) is written out in its own module and takes from here:

- ``make_accelerator(config)``: the device, mixed precision and sharding over processes;
- ``warmup_cosine`` or ``warmup_constant``: its learning-rate schedule, from torch's schedulers;
- ``resume`` at its start and ``save_training_state`` after each epoch or every few steps:
  model, optimizer and schedule in one safetensors file, plus what the loop adds (EMA weights,
  random state as tensors; its counters and history as JSON metadata).

A run resumed from its last checkpoint ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, SequentialLR

from fairkit.io import write_atomic

LAST = "last.safetensors"


class DeviceSettings(Protocol):
    """The fields of a loop's config that ``make_accelerator`` reads."""

    device: str
    mixed_precision: str


def make_accelerator(config: DeviceSettings) -> Accelerator:
    """A fresh Accelerator for this run's device and precision.

    accelerate keeps one process-wide state and refuses a second precision in the same process
    (a chapter that trains fp32 and then bf16); resetting it between runs lifts that.
    """
    AcceleratorState._reset_state(reset_partial_state=True)
    return Accelerator(cpu=config.device == "cpu", mixed_precision=config.mixed_precision)


# --------------------------------------------------------------------------- schedules


def warmup_constant(optimizer: torch.optim.Optimizer, *, warmup_steps: int) -> LRScheduler:
    """The rate times (step + 1) / warmup_steps for the first steps, then the rate itself."""
    if warmup_steps < 1:
        raise ValueError(f"warmup_steps must be at least 1; got {warmup_steps}")
    return LinearLR(optimizer, start_factor=1 / warmup_steps, total_iters=warmup_steps - 1)


def warmup_cosine(
    optimizer: torch.optim.Optimizer, *, total_steps: int, warmup_steps: int
) -> LRScheduler:
    """Linear warm-up (``warmup_constant``), then a cosine decay towards zero at ``total_steps``.

    Step s < w has the factor (s + 1) / w; step s >= w has 0.5 (1 + cos(pi (s - w) / (T - w))).
    torch computes both parts recursively, so a rate may differ from this closed form in its
    last bits (relative 1e-14 at most, tested); float32 weights are not affected.
    """
    cosine = CosineAnnealingLR(optimizer, T_max=max(1, total_steps - warmup_steps))
    return SequentialLR(
        optimizer,
        [warmup_constant(optimizer, warmup_steps=warmup_steps), cosine],
        milestones=[warmup_steps],
    )


# --------------------------------------------------------------------------- checkpoints


def last_checkpoint(checkpoint_dir: str | Path | None) -> Path | None:
    """Where a loop keeps its latest state in ``checkpoint_dir``; None when it keeps none."""
    return Path(checkpoint_dir) / LAST if checkpoint_dir else None


def save_training_state(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: LRScheduler,
    *,
    tensors: dict[str, torch.Tensor] | None = None,
    metadata: dict[str, str] | None = None,
) -> None:
    """Model, optimizer and LR-schedule state in one safetensors file, written atomically.

    Args:
        path: the file to (over)write.
        model: the unwrapped model (``accelerator.unwrap_model``).
        optimizer: its optimizer.
        scheduler: its learning-rate schedule.
        tensors: more state that travels along (e.g. EMA weights, random state).
        metadata: strings that travel along (e.g. the loop's counters as JSON).
    """
    out = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for idx, values in opt["state"].items():
        for key, value in values.items():
            out[f"optim.{idx}.{key}"] = torch.as_tensor(value).cpu().contiguous()
    out.update(tensors or {})
    meta = {
        "param_groups": json.dumps(opt["param_groups"]),
        "scheduler": json.dumps(scheduler.state_dict()),
        **(metadata or {}),
    }
    write_atomic(path, lambda tmp: save_file(out, str(tmp), metadata=meta))


def load_training_state(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: LRScheduler
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Restore what ``save_training_state`` wrote.

    Returns:
        The file's tensors and metadata, for the state the loop added.
    """
    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    optimizer.load_state_dict(
        {"state": state, "param_groups": json.loads(metadata["param_groups"])}
    )
    scheduler.load_state_dict(json.loads(metadata["scheduler"]))
    return tensors, metadata


def resume(
    path: Path | None,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: LRScheduler,
) -> tuple[dict[str, torch.Tensor], dict[str, str]] | None:
    """``load_training_state`` if ``path`` exists; None for a fresh start."""
    if path is None or not path.exists():
        return None
    return load_training_state(path, model, optimizer, scheduler)
