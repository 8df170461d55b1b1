"""Brain MRI-like axial T1 slices from a structural causal model.

Hand-written (new science). Head size follows sex; atrophy (ventricle and sulcal widening)
grows with age and faster with a dementia-like disease, so normal ageing overlaps with disease and
age confounds diagnosis (as in brain-age studies of IXI/ADNI); the scanner's field strength sets
grey/white contrast, noise and the strength of the smooth bias field. Half of the disease's extra
atrophy follows the onset's typical pattern: medial (hippocampal, widening the ventricles) in
late onset, posterior cortical in early onset (before 65), as in the early- versus late-onset
Alzheimer's literature (e.g. Mendez 2012, Arch Med Res): the two age groups present differently.
"""

from __future__ import annotations

import numpy as np
import torch

from fairkit.data import render as R
from fairkit.data.scm import SCM, Mechanism, by_value, categorical

CLASSES = ("healthy", "dementia")
SITES = ("A", "B", "X")
SITE_PROBS = [0.55, 0.45, 0.0]
FIELD_BY_SITE = {"A": [0.8, 0.2], "B": [0.2, 0.8], "X": [0.5, 0.5]}
FIELDS = ("1.5T", "3T")
CONTRAST = {"1.5T": 0.16, "3T": 0.24}
NOISE = {"1.5T": 0.035, "3T": 0.02}
BIAS_FIELD = {"1.5T": 0.08, "3T": 0.2}
LATE_ONSET = 65  # years: the clinical boundary between early- and late-onset dementia
# The share of the disease's extra atrophy that lies in the onset's pattern rather than globally.
# Chosen by the under-representation control only (benchmarks/testbed.py, 5 seeds, quick): with
# all of it global (0) the old lost 0.03 AUROC at 10% vs 50% [-0.03, 0.08], no more than the
# young; at 0.5 they lose about 0.1 with the young unharmed; at 1 about 0.2 (a pattern that no
# global sign hints at).
FOCAL_SHARE = 0.5
# Atrophy's spread at a given age (sd). Chosen by the instrument control: at 0.08 the old/young
# judge reached 0.847 balanced accuracy (gate 0.85), at 0.04 0.862 (one seed, 32 px).
ATROPHY_NOISE = 0.04


def _disease(v):
    p = 1 / (1 + np.exp(-(v["age"] - 74) / 6)) * np.where(v["sex"] == "F", 0.75, 0.6)
    return np.where(v["u_dx"] < p, "dementia", "healthy").astype(object)


def _disease_atrophy(v) -> np.ndarray:
    """The disease's extra atrophy, before it is split between global and focal patterns."""
    return (1 - v["cfg"]["subtlety"]) * 0.45 * (v["diagnosis"] == "dementia")


def _atrophy(v):
    """Global atrophy in [0, 1]: ageing alone reaches disease levels in the old (the confounder)."""
    ageing = np.clip((v["age"] - 30) / 60, 0, 1) ** 1.5
    effect = (1 - FOCAL_SHARE) * _disease_atrophy(v)
    return np.clip(0.1 + 0.55 * ageing + effect + ATROPHY_NOISE * v["u_atrophy"], 0, 1)


def _focal(late: bool):
    """The focal share of the disease's atrophy where onset is late (medial) or early (cortical)."""

    def mechanism(v):
        onset = (v["age"] >= LATE_ONSET) == late
        return FOCAL_SHARE * _disease_atrophy(v) * onset

    return mechanism


def mechanisms() -> list[Mechanism]:
    """The brain MRI SCM, parents before children."""
    u, n = "uniform", "normal"
    return [
        Mechanism("site", (), {"u_site": u}, lambda v: categorical(v["u_site"], np.array(SITE_PROBS), SITES), "external", SITES),
        Mechanism("sex", (), {"u_sex": u}, lambda v: np.where(v["u_sex"] < 0.5, "F", "M").astype(object), "patient", ("F", "M")),
        Mechanism("age", (), {"u_age": u}, lambda v: np.round(20 + 70 * v["u_age"] ** 0.8), "patient", bounds=(20, 90)),
        Mechanism("age_group", ("age",), {}, lambda v: np.where(v["age"] >= 65, "old", "young").astype(object), "patient", ("young", "old"), derived=True),
        Mechanism("head_size", ("sex",), {"u_head": n}, lambda v: np.clip(1.0 + 0.06 * (v["sex"] == "M") + 0.035 * v["u_head"], 0.85, 1.15), "patient", bounds=(0.85, 1.15)),
        Mechanism("diagnosis", ("age", "sex"), {"u_dx": u}, _disease, "disease", CLASSES),
        Mechanism("atrophy", ("age", "diagnosis"), {"u_atrophy": n}, _atrophy, "appearance", bounds=(0, 1)),
        Mechanism("medial_atrophy", ("age", "diagnosis"), {}, _focal(late=True), "appearance", bounds=(0, 1)),
        Mechanism("cortical_atrophy", ("age", "diagnosis"), {}, _focal(late=False), "appearance", bounds=(0, 1)),
        Mechanism("field_strength", ("site",), {"u_field": u}, lambda v: categorical(v["u_field"], by_value(v["site"], FIELD_BY_SITE), FIELDS), "external", FIELDS),
    ]  # fmt: skip


def render_batch(t, size: int) -> np.ndarray:
    """Draw one batch of axial T1-like slices (B, 1, H, W) uint8 from metadata rows ``t``."""
    xx, yy = R.grid(size)
    head = R.col(t["head_size"])
    atrophy = R.col(t["atrophy"])
    ax, ay = 0.72 * head, 0.86 * head
    x, y = xx - R.col(0.02 * t["u_dx_pos"]), yy - R.col(0.02 * t["u_dy_pos"])
    scalp = R.soft_ellipse(x, y, 0, 0, ax + 0.08, ay + 0.08, 0.04)
    skull_in = R.soft_ellipse(x, y, 0, 0, ax + 0.02, ay + 0.02, 0.04)
    brain = R.soft_ellipse(x, y, 0, 0, ax * (1 - 0.06 * atrophy), ay * (1 - 0.06 * atrophy), 0.04)
    white = R.soft_ellipse(x, y, 0, 0.02, ax * 0.68, ay * 0.72, 0.15)
    contrast = R.col(by_value(t["field_strength"].to_numpy(), CONTRAST))
    img = 0.6 * (scalp - skull_in).clamp(0, 1) + 0.12 * skull_in
    img = img + brain * (0.45 + contrast * white)

    # Sulci: dark radial gaps in the cortex that widen with atrophy, posterior cortical included.
    theta = torch.atan2(y / ay, x / ax)
    r = torch.sqrt((x / ax) ** 2 + (y / ay) ** 2)
    folds = torch.cos(14 * theta + 3 * torch.sin(3 * theta + R.col(6 * t["u_fold"])))
    posterior = torch.sigmoid((y - 0.1) / 0.1)
    cortical = atrophy + R.col(t["cortical_atrophy"]) * posterior
    gap = torch.sigmoid((folds - 1 + 0.6 * cortical + 0.1) / 0.08) * torch.sigmoid(
        (r - 0.68) / 0.05
    )
    img = img - 0.35 * brain * gap

    # Lateral ventricles: two dark crescents whose width grows with global and medial atrophy.
    medial = atrophy + R.col(t["medial_atrophy"])
    vent_w, vent_h = 0.05 + 0.17 * medial, 0.22 + 0.12 * medial
    for side in (-1, 1):
        vent = R.soft_ellipse(x, y, side * (0.08 + 0.5 * vent_w), -0.05, vent_w, vent_h, 0.25)
        img = img - 0.5 * vent * brain

    # Scanner: smooth multiplicative bias field, then noise.
    phi = R.col(2 * np.pi * t["u_bias_dir"])
    strength = R.col(by_value(t["field_strength"].to_numpy(), BIAS_FIELD))
    img = img * (1 + strength * (xx * torch.cos(phi) + yy * torch.sin(phi)))
    img = img + R.col(by_value(t["field_strength"].to_numpy(), NOISE)) * R.pick(
        R.grain_bank(size), t["tex_grain"]
    )
    return R.quantise(img)


EXTRA_NOISE = {
    "u_dx_pos": "normal",
    "u_dy_pos": "normal",
    "u_fold": "uniform",
    "u_bias_dir": "uniform",
}
TEXTURES = ("tex_grain",)


def scm(subtlety: float = 0.7) -> SCM:
    """The brain MRI SCM; ``subtlety`` in [0, 1) shrinks the disease's extra atrophy (difficulty)."""
    return SCM(
        modality="mri",
        mechanisms=mechanisms(),
        render=render_batch,
        classes=CLASSES,
        channels=1,
        cfg={"subtlety": subtlety},
        render_noise=EXTRA_NOISE,
        textures=TEXTURES,
    )
