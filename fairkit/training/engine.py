"""What every training loop shares: device and precision, learning-rate schedules, checkpoints.

Each loop (the classifier's, the diffusion model's; preference (DPO) and contrastive loops
to come) is written out in its own module and takes from here:

- ``make_accelerator(config)``: the device, mixed precision and sharding over processes;
- ``warmup_cosine`` or ``warmup_constant``: its learning-rate schedule, from torch's schedulers;
- ``resume`` at its start and ``save_training_state`` after each epoch or every few steps:
  model, optimizer and schedule in one safetensors file, plus what the loop adds (EMA weights,
  random state as tensors; its counters and history as JSON metadata);
- ``run_identity``: what fixes the run's numbers (settings, model, data), stored with each
  checkpoint; ``resume`` refuses a checkpoint of another run unless told to overwrite it;
- ``write_checkpoint`` and ``load_checkpoint``: the one place that signs a checkpoint file
  (identity, name and a SHA-256 of its contents) and checks it, for every file a resume reads.

A run resumed from its last checkpoint ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, SequentialLR

from fairkit.data import Cohort
from fairkit.io import write_atomic

logger = logging.getLogger(__name__)

LAST = "last.safetensors"
CONTENT_HASH = "content_sha256"
"""The metadata key of a checkpoint's SHA-256 over its tensors and other metadata."""
RESUME = ("check", "overwrite")
"""A config's ``resume``: refuse a checkpoint of another run, or discard it and start afresh."""
NOT_IDENTITY = ("device", "progress", "checkpoint_dir", "checkpoint_every", "resume")
"""Config fields a resume may change: they leave the numbers as they are (progress bars, where
checkpoints go and how often) or move the run to another machine (device; CPU and GPU numbers
agree to rounding, not bit for bit)."""


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


# --------------------------------------------------------------------------- run identity


def run_identity(config: Any, model: nn.Module, **data: Any) -> dict[str, str]:
    """What fixes a run's numbers, field by field, so a checkpoint can be matched to its run.

    Args:
        config: the loop's config dataclass; every field counts but those in ``NOT_IDENTITY``.
        model: the model to train: its class, parameter shapes and (diffusers) config count.
        **data: what else the numbers depend on (cohorts, arrays, a loss's name), fingerprinted.

    Returns:
        Each field's value as a short string.
    """
    identity = {
        name: json.dumps(value, default=str)
        for name, value in dataclasses.asdict(config).items()
        if name not in NOT_IDENTITY
    }
    model = getattr(model, "module", model)
    shapes = [f"{k} {tuple(v.shape)} {v.dtype}" for k, v in model.state_dict().items()]
    identity["model_class"] = f"{type(model).__module__}.{type(model).__qualname__}"
    identity["model_shapes"] = f"{len(shapes)} tensors, sha1 {_sha1(json.dumps(shapes))}"
    if isinstance(getattr(model, "config", None), Mapping):  # a diffusers model's settings
        settings = {k: v for k, v in model.config.items() if not k.startswith("_")}
        identity["model_config"] = json.dumps(settings, sort_keys=True, default=str)
    clashes = sorted(identity.keys() & data.keys())
    if clashes:
        raise ValueError(f"data names {clashes} clash with config or model fields")
    return identity | {name: fingerprint(value) for name, value in data.items()}


def fingerprint(value: Cohort | np.ndarray | pd.DataFrame | str | None) -> str:
    """A short description and hash of a cohort (pixels, metadata, classes), array or table."""
    if value is None or isinstance(value, str):
        return str(value)
    if isinstance(value, Cohort):
        n, c, h, w = value.images.shape
        digest = _sha1(value.images, value.meta, "\n".join(value.classes))
        return f"{n} images {c}x{h}x{w}, sha1 {digest}"
    if isinstance(value, np.ndarray):
        return f"array {value.shape} {value.dtype}, sha1 {_sha1(value)}"
    if isinstance(value, pd.DataFrame):
        return f"table of {len(value)} rows, sha1 {_sha1(value)}"
    raise TypeError(f"fingerprint takes a Cohort, array, table, string or None; got {value!r}")


def _sha1(*parts: np.ndarray | pd.DataFrame | str) -> str:
    """The first 16 hex digits of the SHA-1 of arrays (shape, dtype, bytes), tables and text.

    Arrays are read in slices, so a memory-mapped cohort is hashed without loading it whole.
    """
    digest = hashlib.sha1()
    for part in parts:
        if isinstance(part, pd.DataFrame):
            digest.update(json.dumps([list(map(str, part.columns)), str(part.dtypes)]).encode())
            part = pd.util.hash_pandas_object(part, index=False).to_numpy()
        if isinstance(part, str):
            digest.update(part.encode())
            continue
        digest.update(f"{part.shape} {part.dtype}".encode())
        for start in range(0, len(part), 1024):
            digest.update(np.ascontiguousarray(part[start : start + 1024]).data)
    return digest.hexdigest()[:16]


def check_identity(path: Path, metadata: dict[str, str], identity: dict[str, str]) -> None:
    """Refuse a checkpoint that another run wrote (or one that does not say which run wrote it).

    Raises:
        ValueError: naming each field that differs (stored and now) and the folder to delete.
    """
    if "identity" not in metadata:
        raise checkpoint_error(
            path,
            "predates identity checks: it does not say which run wrote it, so it cannot be "
            "resumed safely",
        )
    stored = json.loads(metadata["identity"])
    differ = sorted(k for k in stored.keys() | identity.keys() if stored.get(k) != identity.get(k))
    if differ:
        changes = "; ".join(
            f"{k}: stored {stored.get(k, '(absent)')}, now {identity.get(k, '(absent)')}"
            for k in differ
        )
        raise checkpoint_error(path, f"belongs to another run ({changes})")


def checkpoint_error(path: Path, problem: str) -> ValueError:
    """A refusal of checkpoint ``path`` for ``problem``, with the way out: start afresh."""
    return ValueError(
        f"checkpoint {path} {problem}; delete {path.parent} or pass resume='overwrite' to start "
        "afresh"
    )


# --------------------------------------------------------------------------- checkpoints


def last_checkpoint(checkpoint_dir: str | Path | None) -> Path | None:
    """Where a loop keeps its latest state in ``checkpoint_dir``; None when it keeps none.

    Raises:
        NotADirectoryError: before any training, when ``checkpoint_dir`` or a folder above it
            is a file, where the first checkpoint would fail.
    """
    if not checkpoint_dir:
        return None
    folder = Path(checkpoint_dir)
    taken = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
    if taken is not None:
        raise NotADirectoryError(
            f"checkpoint_dir {folder}: expected a folder (or a path to make one), but {taken} "
            "is a file"
        )
    return folder / LAST


def save_training_state(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: LRScheduler,
    *,
    identity: dict[str, str],
    tensors: dict[str, torch.Tensor] | None = None,
    metadata: dict[str, str] | None = None,
) -> None:
    """Model, optimizer and LR-schedule state in one safetensors file, written atomically.

    Args:
        path: the file to (over)write.
        model: the unwrapped model (``accelerator.unwrap_model``).
        optimizer: its optimizer.
        scheduler: its learning-rate schedule.
        identity: the run's ``run_identity``, which ``resume`` checks.
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
    write_checkpoint(path, out, identity=identity, metadata=meta)


def write_checkpoint(
    path: Path,
    tensors: dict[str, torch.Tensor],
    *,
    identity: dict[str, str],
    metadata: dict[str, str] | None = None,
) -> None:
    """Tensors and metadata in a safetensors file, written atomically and signed for loading.

    The signature is the run's identity, the file's name and a SHA-256 of everything else.
    """
    meta = {**(metadata or {}), "identity": json.dumps(identity, sort_keys=True), "file": path.name}
    meta[CONTENT_HASH] = _content_hash(tensors, meta)
    write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def load_checkpoint(
    path: Path, identity: dict[str, str]
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A checkpoint of this run that ``write_checkpoint`` wrote under this name; else refused.

    Raises:
        ValueError: naming the file when it is corrupt, unsigned, renamed or another run's.
    """
    tensors, metadata = read_checkpoint(path)
    if metadata.get("file") != path.name:
        raise checkpoint_error(path, f"was written as {metadata.get('file')}, not {path.name}")
    check_identity(path, metadata, identity)
    return tensors, metadata


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A checkpoint's tensors and metadata, checked against its content hash.

    Raises:
        ValueError: naming the file and what to do when it is truncated, corrupt or carries no
            hash (older than checksums), in place of safetensors' trace.
    """
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError) as error:
        raise checkpoint_error(path, f"is truncated or corrupt ({error})") from None
    if CONTENT_HASH not in metadata:
        raise checkpoint_error(
            path,
            "carries no content hash: it predates checksums (or fairkit did not write it), so "
            "it cannot be checked",
        )
    if metadata[CONTENT_HASH] != _content_hash(tensors, metadata):
        raise checkpoint_error(path, "is corrupt: its contents do not match their SHA-256")
    return tensors, metadata


def _content_hash(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> str:
    """SHA-256 of the tensors (name, dtype, shape, bytes) and metadata, in sorted order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name} {tensor.dtype} {tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().data)
    rest = {k: v for k, v in metadata.items() if k != CONTENT_HASH}
    digest.update(json.dumps(rest, sort_keys=True).encode())
    return digest.hexdigest()


def load_training_state(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: LRScheduler
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Restore what ``save_training_state`` wrote, whichever run wrote it (``resume`` checks).

    Returns:
        The file's tensors and metadata, for the state the loop added.
    """
    tensors, metadata = read_checkpoint(path)
    _restore(tensors, metadata, model, optimizer, scheduler)
    return tensors, metadata


def _restore(tensors, metadata, model, optimizer, scheduler) -> None:
    """Put a checkpoint's model, optimizer and schedule state back."""
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


def resume(
    path: Path | None,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: LRScheduler,
    *,
    identity: dict[str, str],
    mode: str = "check",
) -> tuple[dict[str, torch.Tensor], dict[str, str]] | None:
    """Restore this run's checkpoint at ``path`` if there is one; None for a fresh start.

    Args:
        path: the checkpoint (``last_checkpoint``); None when the run keeps none.
        model: the unwrapped model.
        optimizer: its optimizer.
        scheduler: its learning-rate schedule.
        identity: this run's ``run_identity``; a checkpoint of another run is refused.
        mode: ``"check"`` (refuse another run's checkpoint) or ``"overwrite"`` (delete it and
            start afresh).

    Returns:
        The file's tensors and metadata, for the state the loop added.
    """
    if mode not in RESUME:
        raise ValueError(f"resume must be one of {RESUME}; got {mode!r}")
    if path is None or not path.exists():
        return None
    if mode == "overwrite":
        logger.info("resume='overwrite': deleting %s and starting afresh", path)
        path.unlink(missing_ok=True)
        return None
    tensors, metadata = load_checkpoint(path, identity)
    _restore(tensors, metadata, model, optimizer, scheduler)
    return tensors, metadata
