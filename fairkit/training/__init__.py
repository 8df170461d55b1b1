"""Training: one engine (accelerate, schedules, checkpoints, resume) and its loops."""

from importlib import import_module

from fairkit.data import as_tensor  # uint8 images as floats in [0, 1]
from fairkit.training.classifier import (
    EpochOrder,  # each epoch's sample order, uniform or group-balanced, seeded per epoch
    PerSampleLoss,  # the type of a pluggable loss: (output, labels) -> per-sample losses
    TrainConfig,  # how to train a classifier
    TrainResult,  # the trained classifier, its history and its best epoch
    fit,  # the classifier loop
    fit_attribute,  # a classifier of a metadata attribute (group, sex, ...)
    head_index,  # which head scores each sample in a model with one head per group
    per_sample_cross_entropy,  # the default loss of ``fit``
    predict,  # the predictions table of a classifier on a cohort
    validation_score,  # AUROC on validation data, overall or worst group
)
from fairkit.training.engine import (
    last_checkpoint,  # where a loop keeps its latest state
    load_training_state,  # restore model, optimizer and schedule from a checkpoint
    make_accelerator,  # a fresh Accelerator for a run's device and precision
    read_checkpoint,  # a checkpoint's tensors and metadata; a corrupt file is one clear error
    resume,  # restore this run's checkpoint when there is one; refuse another run's
    run_identity,  # what fixes a run's numbers (settings, model, data), kept with its checkpoints
    save_training_state,  # model, optimizer, schedule and the run's identity in one file
    warmup_constant,  # linear warm-up, then a constant rate
    warmup_cosine,  # linear warm-up, then cosine decay
)

# The diffusion and preference loops import diffusers, which takes seconds: their names are
# imported on first use (``__getattr__``), e.g. ``from fairkit.training import dpo_loss``.
_LAZY = {
    "DiffusionConfig": "diffusion",  # how to train the diffusion model
    "train_diffusion": "diffusion",  # the diffusion loop (noise prediction, EMA, checkpoints)
    "PreferenceConfig": "preference",  # how to fine-tune it on preference pairs
    "train_preference": "preference",  # the Diffusion-DPO loop, the diffusion loop's steps
    "dpo_loss": "preference",  # Diffusion-DPO's objective, against a reference or reference-free
    "pair_errors": "preference",  # per-pair errors of winners and losers, one batched call
    "preference_accuracy": "preference",  # how often a model denoises the winner better
}


def __getattr__(name: str):
    """The diffusion and preference loops' names, imported on first use (diffusers is slow)."""
    if name in _LAZY:
        return getattr(import_module(f"fairkit.training.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DiffusionConfig",
    "EpochOrder",
    "PerSampleLoss",
    "PreferenceConfig",
    "TrainConfig",
    "TrainResult",
    "as_tensor",
    "dpo_loss",
    "fit",
    "fit_attribute",
    "head_index",
    "last_checkpoint",
    "load_training_state",
    "make_accelerator",
    "pair_errors",
    "per_sample_cross_entropy",
    "predict",
    "preference_accuracy",
    "read_checkpoint",
    "resume",
    "run_identity",
    "save_training_state",
    "train_diffusion",
    "train_preference",
    "validation_score",
    "warmup_constant",
    "warmup_cosine",
]
