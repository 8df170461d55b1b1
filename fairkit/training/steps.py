"""One optimiser-step loop shared by the diffusion, preference and contrastive loops.

AdamW with a linear warm-up to a constant rate, an EMA of the weights (diffusers'
``EMAModel``), a tqdm bar, and safetensors checkpoints carrying the run's identity that resume
to the same final weights (``fairkit.training.engine``). Each loop brings only its step's loss.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
import torch
from accelerate import Accelerator
from diffusers.training_utils import EMAModel
from torch import nn
from torch.optim.lr_scheduler import LRScheduler
from tqdm.auto import tqdm

from fairkit.training.engine import (
    RESUME,
    DeviceSettings,
    last_checkpoint,
    make_accelerator,
    resume,
    run_identity,
    save_training_state,
    warmup_constant,
)

StepLoss = Callable[[nn.Module, int, Accelerator], tuple[torch.Tensor, dict[str, float]]]
"""One step's loss: (prepared model, step, accelerator) -> (loss, more history fields)."""


class StepSettings(DeviceSettings, Protocol):
    """The fields of a loop's config that ``run_steps`` reads (all but ``steps`` enter its identity)."""

    steps: int
    lr: float
    warmup_steps: int
    ema_decay: float
    checkpoint_dir: str | None
    checkpoint_every: int
    progress: bool
    resume: str


def check_resume(resume: str) -> None:
    """Refuse a config's ``resume`` that is not one of ``engine.RESUME``."""
    if resume not in RESUME:
        raise ValueError(f"resume must be one of {RESUME}; got {resume!r}")


def run_steps(
    model: nn.Module,
    config: StepSettings,
    *,
    desc: str,
    identity_data: dict[str, Any],
    step_loss: StepLoss,
) -> tuple[nn.Module, pd.DataFrame]:
    """The training loop of a model, given each step's loss; shared by the step loops.

    AdamW with a linear warm-up to a constant rate, an EMA of the weights (diffusers'
    ``EMAModel``), a tqdm bar, and a checkpoint every ``config.checkpoint_every`` steps and at
    the end that resumes to the same final weights. A checkpoint of another run is refused
    unless ``config.resume="overwrite"``; one of a shorter run of the same settings is resumed
    (the run goes on from its end), one past ``config.steps`` refused.

    Args:
        model: the model to train; its weights change in place and end as the EMA weights.
        config: the loop's settings (``StepSettings``); its fields enter the run's identity.
        desc: the progress bar's label.
        identity_data: what else fixes the run's numbers (data, a reference's weights), passed
            to ``engine.run_identity``.
        step_loss: computes step ``step``'s loss with the prepared model (seeding its own
            draws by the step, so a resumed run draws what an uninterrupted one would), and the
            fields it adds to the history.

    Returns:
        The model with its EMA weights, in eval mode, and one history row per step: ``step``,
        ``loss`` and ``step_loss``'s fields.
    """
    accelerator = make_accelerator(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    lr_schedule = warmup_constant(optimizer, warmup_steps=config.warmup_steps)
    ema = EMAModel(model.parameters(), decay=config.ema_decay)
    model, optimizer = accelerator.prepare(model, optimizer)
    start, history = 0, []
    last = last_checkpoint(config.checkpoint_dir)
    unwrapped = accelerator.unwrap_model(model)
    identity = _identity(config, unwrapped, identity_data) if last else {}
    restored = resume(
        last, unwrapped, optimizer, lr_schedule, identity=identity, mode=config.resume
    )
    if restored is not None:
        start, history = _restore_ema(ema, *restored)
        if start > config.steps:
            raise ValueError(
                f"the checkpoint {last} is at step {start}, past this run's {config.steps} "
                "steps; ask for at least as many steps, another checkpoint_dir, or "
                "resume='overwrite' to start afresh"
            )
    ema.to(accelerator.device)
    bar = tqdm(
        total=config.steps, initial=start, desc=desc, unit="step", disable=not config.progress
    )
    for step in range(start, config.steps):
        loss, fields = step_loss(model, step, accelerator)
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        optimizer.step()
        lr_schedule.step()
        ema.step(accelerator.unwrap_model(model).parameters())
        history.append({"step": step, "loss": loss.item(), **fields})
        bar.update()
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if last is not None and (
            (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps
        ):
            _checkpoint(
                last,
                accelerator.unwrap_model(model),
                ema=ema,
                optimizer=optimizer,
                lr_schedule=lr_schedule,
                step=step + 1,
                history=history,
                identity=identity,
            )
    bar.close()
    model = accelerator.unwrap_model(model)
    ema.copy_to(model.parameters())
    return model.eval(), pd.DataFrame(history)


def _identity(config: StepSettings, model: nn.Module, data: dict[str, Any]) -> dict[str, str]:
    """The run's identity without its length: a longer run resumes from a shorter one's end.

    The state at step k does not depend on how many steps follow (the rate is constant after
    the warm-up, each step seeds its own draws), so the search of a step count trains once and
    reads each count on the way (``fairkit.studies.fairgen.align_tuned``).
    """
    identity = run_identity(config, model, **data)
    identity.pop("steps")
    return identity


def _checkpoint(
    path: Path,
    model: nn.Module,
    *,
    ema: EMAModel,
    optimizer: torch.optim.Optimizer,
    lr_schedule: LRScheduler,
    step: int,
    history: list[dict],
    identity: dict[str, str],
) -> None:
    """The engine's checkpoint (with the run's identity) plus the EMA weights, step and history."""
    save_training_state(
        path,
        model,
        optimizer,
        lr_schedule,
        identity=identity,
        tensors={
            f"ema.{k}": p.detach().cpu().contiguous() for k, p in enumerate(ema.shadow_params)
        },
        metadata={
            "step": str(step),
            "history": json.dumps(history),
            "ema_steps": str(ema.optimization_step),
        },
    )


def _restore_ema(ema: EMAModel, tensors: dict, metadata: dict) -> tuple[int, list[dict]]:
    """Put the checkpoint's EMA weights back; return its step and loss history."""
    for k, p in enumerate(ema.shadow_params):
        p.data.copy_(tensors[f"ema.{k}"])
    ema.optimization_step = int(metadata["ema_steps"])
    return int(metadata["step"]), json.loads(metadata["history"])
