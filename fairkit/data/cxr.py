"""Chest X-ray-like images (PA/AP frontal view) from a structural causal model.

Hand-written (new science). Anatomy follows sex and body habitus (thorax width, breast soft-
tissue shadows over the lung bases, which hide part of a finding's contrast, as breast shadows
do on real films), bone density falls with age (rib contrast); abnormal films present
differently by sex (the testbed's premise, SPARE's and FairGen's): women's mostly as pleural
effusion, men's mostly as an enlarged heart or a lung opacity; the view changes the apparent heart
size (AP magnifies the heart; cardiothoracic ratio > 0.5 reads as cardiomegaly); sites differ in
scanner contrast and noise, laterality markers and support devices, as in the SynthFair taxonomy
of patient and external covariates.
"""

from __future__ import annotations

import numpy as np
import torch

from fairkit.data import render as R
from fairkit.data.scm import SCM, Mechanism, by_value, categorical, softmax

CLASSES = ("no_finding", "cardiomegaly", "effusion", "opacity")
SITES = ("A", "B", "C", "X")
RACES = ("White", "Black", "Asian")
SITE_PROBS = [0.45, 0.35, 0.20, 0.0]
RACE_BY_SITE = {
    "A": [0.70, 0.20, 0.10],
    "B": [0.50, 0.35, 0.15],
    "C": [0.35, 0.20, 0.45],
    "X": [0.45, 0.30, 0.25],
}
SCANNER_GAMMA = {"A": 1.0, "B": 0.85, "C": 1.15, "X": 1.3}
SCANNER_NOISE = {"A": 0.015, "B": 0.03, "C": 0.02, "X": 0.04}
AP_BY_SITE = {"A": 0.25, "B": 0.45, "C": 0.3, "X": 0.5}
MARKER_SIDE = {"A": 0, "B": 1, "C": 0, "X": 1}
# The knobs below were chosen by the under-representation control only (benchmarks/testbed.py,
# 5 seeds, quick): with faint breast shadows (0.06), findings seen alike through them and one mix
# of findings for both sexes, women at 10% lost 0.012 AUROC, exactly as much as men.
BREAST_SHADOW = 0.6  # brightness of breast soft tissue over the lung bases (per unit thickness)
CONSPICUITY_LOSS = 0.5  # fraction of a finding's contrast lost per unit of breast tissue over it
PRESENTATION = 2.0  # logit tilt of the abnormal findings' mix by sex: effusion in women


def _diagnosis(v):
    old = (v["age"] - 55) / 20
    male = (v["sex"] == "M").astype(float)
    black = (v["race"] == "Black").astype(float)
    logits = np.stack(
        [
            1.0 - 0.6 * old,
            -1.0 + 0.6 * old + 0.25 * male + 0.45 * black,
            -1.1 + 0.5 * old,
            -0.8 + 0.3 * old + 0.1 * male,
        ],
        axis=1,
    )
    # Each sex keeps its chance of an abnormal film; only the mix of findings differs.
    normal = softmax(logits)[:, :1]
    tilt = PRESENTATION * (1 - 2 * male)[:, None] * np.array([-1.0, 1.0, -1.0])
    findings = (1 - normal) * softmax(logits[:, 1:] + tilt)
    return categorical(v["u_dx"], np.concatenate([normal, findings], axis=1), CLASSES)


def _ctr(v):
    """Cardiothoracic ratio: about 0.43 in health, above 0.5 with cardiomegaly."""
    sick = (v["diagnosis"] == "cardiomegaly").astype(float)
    return (
        0.43 + 0.03 * v["u_ctr"] + 0.001 * (v["age"] - 55) + (1 - v["cfg"]["subtlety"]) * 0.2 * sick
    )


def _breast_tissue(v):
    """Soft-tissue thickness over the lung bases: breasts in women, little in men."""
    female = v["sex"] == "F"
    tissue = np.where(
        female, 0.6 + 0.5 * v["habitus"] + 0.15 * v["u_breast"], 0.05 + 0.1 * v["habitus"]
    )
    return np.clip(tissue, 0, 1.5)


def _support_device(v):
    sick = (v["diagnosis"] != "no_finding").astype(float)
    p = 0.08 + 0.25 * (v["view"] == "AP") + 0.1 * sick
    return (v["u_device"] < p).astype(np.int64)


def mechanisms() -> list[Mechanism]:
    """The chest X-ray SCM, parents before children."""
    u, n = "uniform", "normal"
    return [
        Mechanism("site", (), {"u_site": u}, lambda v: categorical(v["u_site"], np.array(SITE_PROBS), SITES), "external", SITES),
        Mechanism("sex", (), {"u_sex": u}, lambda v: np.where(v["u_sex"] < 0.5, "F", "M").astype(object), "patient", ("F", "M")),
        Mechanism("age", (), {"u_age": n}, lambda v: np.clip(58 + 17 * v["u_age"], 18, 95).round(), "patient", bounds=(18, 95)),
        Mechanism("age_group", ("age",), {}, lambda v: np.where(v["age"] >= 65, "old", "young").astype(object), "patient", ("young", "old"), derived=True),
        Mechanism("race", ("site",), {"u_race": u}, lambda v: categorical(v["u_race"], by_value(v["site"], RACE_BY_SITE), RACES), "patient", RACES),
        Mechanism("habitus", ("sex", "race"), {"u_habitus": n}, lambda v: np.clip(0.5 + 0.18 * v["u_habitus"] + 0.05 * (v["race"] == "Black") - 0.05 * (v["race"] == "Asian"), 0, 1), "patient", bounds=(0, 1)),
        Mechanism("breast_tissue", ("sex", "habitus"), {"u_breast": n}, _breast_tissue, "patient", bounds=(0, 1.5)),
        Mechanism("bone_density", ("age", "sex", "race"), {"u_bone": n}, lambda v: np.clip(1.0 - 0.008 * np.maximum(v["age"] - 40, 0) * np.where(v["sex"] == "F", 1.4, 1.0) + 0.08 * (v["race"] == "Black") + 0.07 * v["u_bone"], 0.2, 1.2), "patient", bounds=(0.2, 1.2)),
        Mechanism("diagnosis", ("age", "sex", "race"), {"u_dx": u}, _diagnosis, "disease", CLASSES),
        Mechanism("view", ("site", "diagnosis"), {"u_view": u}, lambda v: np.where(v["u_view"] < by_value(v["site"], AP_BY_SITE) + 0.15 * (v["diagnosis"] != "no_finding"), "AP", "PA").astype(object), "external", ("AP", "PA")),
        Mechanism("ctr", ("diagnosis", "age"), {"u_ctr": n}, _ctr, "appearance"),
        Mechanism("effusion_level", ("diagnosis",), {"u_eff": u}, lambda v: np.where(v["diagnosis"] == "effusion", (1 - v["cfg"]["subtlety"]) * (0.25 + 0.35 * v["u_eff"]), 0.0), "appearance", bounds=(0, 1)),
        Mechanism("opacity", ("diagnosis",), {"u_opac": u}, lambda v: np.where(v["diagnosis"] == "opacity", (1 - v["cfg"]["subtlety"]) * (0.5 + 0.5 * v["u_opac"]), 0.0), "appearance", bounds=(0, 1)),
        Mechanism("support_device", ("view", "diagnosis"), {"u_device": u}, _support_device, "external", (0, 1)),
        Mechanism("marker", ("site",), {"u_marker": u}, lambda v: (v["u_marker"] < 0.85).astype(np.int64), "external", (0, 1)),
    ]  # fmt: skip


def render_batch(t, size: int) -> np.ndarray:
    """Draw one batch of frontal chest radiographs (B, 1, H, W) uint8 from metadata rows ``t``."""
    xx, yy = R.grid(size)
    male = R.col(t["sex"] == "M")
    habitus = R.col(t["habitus"])
    width = 0.74 + 0.07 * male + 0.12 * habitus + R.col(0.03 * t["u_w"])
    body = R.soft_ellipse(xx, yy, 0, 0.12, width, 1.05, 0.08)
    soft = 0.30 + 0.12 * habitus
    img = 0.04 + body * soft

    # Lungs, ribs, spine, diaphragm and heart.
    lung_y, lung_h = R.col(-0.02 + 0.03 * t["u_ly"]), 0.60
    effusion = R.col(t["effusion_level"])
    conspicuity = (1 - CONSPICUITY_LOSS * R.col(t["breast_tissue"])).clamp(0.1, 1)
    lungs = 0.0
    for side in (-1, 1):
        lung = R.soft_ellipse(xx, yy, side * 0.47 * width, lung_y, 0.33 * width, lung_h, 0.1)
        fluid = torch.sigmoid(
            (yy - (lung_y + lung_h * (1 - 2 * effusion)) - 0.15 * (xx * side).abs()) / 0.04
        )
        lungs = lungs + lung * (1 - conspicuity * fluid * (effusion > 0))
    ribs = 0.5 + 0.5 * torch.cos(2 * np.pi * 7 * (yy + 0.35 * xx**2 + R.col(0.1 * t["u_rib"])))
    img = img - 0.22 * lungs * soft / 0.36 + 0.07 * lungs * ribs**3 * R.col(t["bone_density"])
    img = img + 0.25 * torch.exp(-((xx / 0.07) ** 2)) * body * R.col(t["bone_density"])
    view = R.col(np.where(t["view"] == "AP", 1.12, 1.0))
    heart_w = R.col(t["ctr"]) * view * width
    img = img + 0.28 * R.soft_ellipse(xx, yy, 0.12 * width, 0.3, heart_w, 0.28, 0.12)
    img = img + 0.2 * torch.sigmoid((yy - 0.62 - 0.12 * torch.cos(3 * xx)) / 0.04) * body

    # Findings, soft tissue and external factors.
    opac_x = R.col(np.where(t["u_ox"] < 0.5, -1, 1) * 0.45) * width
    blob = R.soft_ellipse(xx, yy, opac_x, R.col(0.25 * t["u_oy"]), 0.22, 0.18, 0.5)
    texture = (1 + 0.6 * R.pick(R.smooth_bank(size, 0.08), t["tex_opacity"])).clamp(0, 2)
    img = img + 0.2 * R.col(t["opacity"]) * conspicuity * blob * texture * lungs
    breast = R.col(t["breast_tissue"])
    for side in (-1, 1):
        img = img + BREAST_SHADOW * breast * R.soft_ellipse(
            xx, yy, side * 0.45 * width, 0.55, 0.3 * width, 0.22, 0.3
        )
    tubes = R.pick(R.stroke_bank(size, (2, 4), 0.008), t["tex_device"]) * (xx.abs() < 0.7)
    img = img + 0.55 * R.col(t["support_device"]) * tubes
    side = R.col(np.where(by_value(t["site"].to_numpy(), MARKER_SIDE) > 0, 1, -1))
    mark = (
        ((xx * side - 0.82).abs() < 0.06)
        & ((yy + 0.82).abs() < 0.06)
        & ~(((xx * side - 0.84).abs() < 0.03) & ((yy + 0.8).abs() < 0.04))
    )
    img = img + 0.85 * R.col(t["marker"]) * mark
    img = img.clamp(0, 1) ** R.col(by_value(t["site"].to_numpy(), SCANNER_GAMMA))
    img = img + R.col(by_value(t["site"].to_numpy(), SCANNER_NOISE)) * R.pick(
        R.grain_bank(size), t["tex_grain"]
    )
    return R.quantise(img)


EXTRA_NOISE = {
    "u_w": "normal",
    "u_ly": "normal",
    "u_rib": "uniform",
    "u_ox": "uniform",
    "u_oy": "normal",
}
TEXTURES = ("tex_opacity", "tex_device", "tex_grain")


def scm(subtlety: float = 0.3) -> SCM:
    """The chest X-ray SCM; ``subtlety`` in [0, 1) weakens the findings' signs (difficulty).

    The default, 0.3, leaves the findings visible at 32 px: at 0.6 the classifier mostly read age
    from bone density (AUROC 0.78; age alone gives 0.73), and no group could lose what it never
    learnt (the under-representation control).
    """
    return SCM(
        modality="cxr",
        mechanisms=mechanisms(),
        render=render_batch,
        classes=CLASSES,
        channels=1,
        cfg={"subtlety": subtlety},
        render_noise=EXTRA_NOISE,
        textures=TEXTURES,
    )
