"""Balanced synthesis: how many images of each rare (group, diagnosis) cell to generate.

FairGen (2026) fills the rare demographic x pathology cells of a training set with generated
images, drawing the cells with weights proportional to the inverse square root of their
frequency. Its counterpart here says exactly how many images each cell needs: ``inverse``
fills every cell up to the largest (a uniform composition), ``sqrt_inverse`` fills cell c to
sqrt(n_c * n_max), the composition that sampling cells with weight n_c^(-1/2) gives (cell c is
drawn in proportion to n_c * n_c^(-1/2) = sqrt(n_c); scaled so the largest cell needs none).

``synthesise`` then makes those images with the conditional diffusion model
(``fairkit.models.diffusion``): SDE-DPM-Solver++ (Lu et al. 2022), 20 steps by default, with
classifier-free guidance (Ho & Salimans 2022) towards each cell's group and finding, from
starting noise drawn from the run's seed, so one seed gives the same images on a CPU.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from fairkit import seeds
from fairkit.data import Cohort

if TYPE_CHECKING:
    from fairkit.models.diffusion import ConditionalUNet

RULES = ("sqrt_inverse", "inverse")
COUNTS = ("real", "target", "synthesise")  # the plan's columns that are not cell values


def missing_cells(
    meta: pd.DataFrame, *, by: tuple[str, ...], rule: str = "sqrt_inverse"
) -> pd.DataFrame:
    """Per cell of ``by`` (every combination of the values seen): real images, target, to make.

    Args:
        meta: the training set's metadata, one row per image.
        by: the columns whose combinations are the cells, e.g. ("skin_group", "diagnosis").
        rule: ``sqrt_inverse`` (FairGen's) or ``inverse`` (every cell up to the largest).

    Returns:
        One row per cell: its values, ``real``, ``target`` and ``synthesise`` (target - real).
        An empty cell's square-root target is 0: only ``inverse`` fills a cell with no image.
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}; got {rule!r}")
    missing = [c for c in by if c not in meta]
    if missing or not by:
        raise KeyError(f"cells need metadata columns; missing {missing or 'all (by is empty)'}")
    if len(meta) == 0:
        raise ValueError("the training set is empty: no cell to balance")
    values = [sorted(meta[c].astype(str).unique()) for c in by]
    cells = pd.MultiIndex.from_product(values, names=list(by))
    real = meta.astype({c: str for c in by}).groupby(list(by)).size().reindex(cells, fill_value=0)
    largest = real.max()
    if rule == "inverse":
        target = pd.Series(largest, index=cells)
    else:
        target = np.round(np.sqrt(real * largest)).astype(int)
    return pd.DataFrame({"real": real, "target": target, "synthesise": target - real}).reset_index()


def synthesise(
    model: ConditionalUNet,
    plan: pd.DataFrame,
    *,
    label: str,
    classes: tuple[str, ...],
    modality: str,
    seed: int,
    sampler: str = "dpmsolver_sde",
    steps: int = 20,
    guidance: float = 2.0,
    batch_size: int | None = None,
    progress: bool = True,
) -> Cohort:
    """Generate ``plan["synthesise"]`` images of each cell (row) of ``plan``.

    Each image is conditioned on its row's values of the model's conditions that ``plan`` has;
    a condition that ``plan`` lacks gets its null code (the unconditional half of guidance).

    Args:
        model: the trained conditional diffusion model.
        plan: one row per cell, e.g. from ``missing_cells``: the cell's values and how many
            images to make (``synthesise``, non-negative integers).
        label: the plan's column holding the class name, one of the model's conditions
            (e.g. ``"finding"``); each image's ``label`` is its index in ``classes``.
        classes: the class names of the returned cohort (the real cohort's).
        modality: the returned cohort's modality (the real cohort's).
        seed: the run's seed; the starting noise comes from its ``"synthesis"`` stream.
        sampler: ``dpmsolver_sde`` (SDE-DPM-Solver++, the reverse SDE like DDPM's, 20 times
            fewer steps), ``dpmsolver`` (DPM-Solver++, the ODE), ``ddim`` or ``ddpm``.
        steps: denoising steps.
        guidance: classifier-free guidance scale (1: none).
        batch_size: network inputs per call (default ``diffusion.batch_for`` the device).
        progress: show a progress bar over the batches.

    Returns:
        The generated images, with the cell's columns, ``label``, ``synthetic`` (True), a unique
        ``patient_id`` ("synthetic-000000", ...) and ``split`` ("synthetic") as metadata.
    """
    from fairkit.models import diffusion  # diffusers takes seconds to import

    counts = _counts(plan)
    cells = plan.drop(columns=[c for c in COUNTS if c in plan]).reset_index(drop=True)
    labels = _label_codes(cells, label=label, classes=classes, model=model)
    codes = _cell_codes(model, cells).repeat_interleave(torch.tensor(counts), dim=0)
    size, channels = model.config.image_size, model.config.channels
    generator = seeds.torch_generator(seed, "synthesis")
    noise = torch.randn((len(codes), channels, size, size), generator=generator)
    if len(codes):
        x = diffusion.sample(
            model,
            codes,
            sampler=sampler,
            steps=steps,
            guidance=guidance,
            generator=generator,
            noise=noise,
            batch_size=batch_size,
            progress=progress,
        )
        images = diffusion.to_uint8(x)
    else:
        images = np.zeros((0, channels, size, size), np.uint8)
    meta = cells.loc[cells.index.repeat(counts)].reset_index(drop=True)
    meta = meta.assign(
        label=np.repeat(labels, counts),
        synthetic=True,
        patient_id=[f"synthetic-{k:06d}" for k in range(len(meta))],
        split="synthetic",
    )
    return Cohort(images, meta, modality, tuple(classes))


def _counts(plan: pd.DataFrame) -> np.ndarray:
    """The plan's ``synthesise`` column as non-negative integers; anything else refused."""
    if "synthesise" not in plan:
        raise KeyError(
            f"the plan needs a 'synthesise' column (images per cell); got {list(plan.columns)}"
        )
    counts = plan["synthesise"]
    if not pd.api.types.is_integer_dtype(counts):
        raise ValueError(f"'synthesise' must hold integers; got dtype {counts.dtype}")
    if (counts < 0).any():
        raise ValueError(
            f"'synthesise' must be >= 0; got {sorted(counts[counts < 0].unique().tolist())}"
        )
    return counts.to_numpy(dtype=np.int64)


def _label_codes(
    cells: pd.DataFrame, *, label: str, classes: tuple[str, ...], model: ConditionalUNet
) -> np.ndarray:
    """Each cell's class index; a label column the model is not conditioned on is refused."""
    if label not in cells:
        raise KeyError(f"the plan has no {label!r} column (the class); got {list(cells.columns)}")
    if label not in model.conditions.vocabulary:
        raise ValueError(
            f"the model is not conditioned on {label!r}, so its images would not show the class; "
            f"its conditions are {list(model.conditions.vocabulary)}"
        )
    names = cells[label].astype(str)
    unknown = sorted(set(names) - set(classes))
    if unknown:
        raise ValueError(f"{label} values {unknown} are not among the classes {list(classes)}")
    return names.map({c: k for k, c in enumerate(classes)}).to_numpy(dtype=np.int64)


def _cell_codes(model: ConditionalUNet, cells: pd.DataFrame) -> torch.Tensor:
    """The model's condition codes (cells, attributes); null for conditions the cells lack."""
    vocabulary = model.conditions.vocabulary
    absent = [k for k, name in enumerate(vocabulary) if name not in cells]
    placeholders = {name: values[0] for name, values in vocabulary.items() if name not in cells}
    codes = model.conditions.codes(cells.assign(**placeholders))
    codes[:, absent] = model.conditions.null[absent]
    return codes
