"""Dermoscopy-like skin images from a structural causal model.

Hand-written (new science). Skin colour follows the individual typology angle (ITA) of each
Fitzpatrick type (Del Bino & Bernerd 2013; Groh et al. 2021, Fitzpatrick17k); lesions follow the
ABCD rule of dermoscopy (asymmetry, border, colour variegation, diameter); melanin lowers lesion
contrast on darker skin; artifacts (hair, rulers, ink, vignetting, device colour cast) follow
site and device, as catalogued for ISIC by Bissoto et al. (2020).
"""

from __future__ import annotations

import numpy as np
import torch

from fairkit.data import render as R
from fairkit.data.scm import SCM, Mechanism, by_value, categorical, softmax

CLASSES = ("nevus", "melanoma", "bcc", "seborrheic_keratosis")
MALIGNANT = ("melanoma", "bcc")
SKIN_TYPES = ("I", "II", "III", "IV", "V", "VI")
SITES = ("A", "B", "C", "X")  # X: the external site, reached by do(site="X")
DEVICES = ("dermlite", "molemax", "phone", "heine")

SKIN_TYPE_BY_SITE = {
    "A": [0.15, 0.30, 0.25, 0.15, 0.10, 0.05],
    "B": [0.10, 0.20, 0.25, 0.20, 0.15, 0.10],
    "C": [0.05, 0.10, 0.15, 0.25, 0.25, 0.20],
    "X": [0.10, 0.15, 0.20, 0.20, 0.20, 0.15],
}
SITE_PROBS = [0.45, 0.35, 0.20, 0.0]
DEVICE_BY_SITE = {
    "A": [0.7, 0.3, 0.0, 0.0],
    "B": [0.0, 0.6, 0.4, 0.0],
    "C": [0.3, 0.0, 0.7, 0.0],
    "X": [0.0, 0.0, 0.4, 0.6],
}
ITA_CENTRE = dict(zip(SKIN_TYPES, [62.0, 48.0, 34.0, 19.0, -10.0, -40.0], strict=True))
RULER_BY_SITE = {"A": 0.15, "B": 0.35, "C": 0.25, "X": 0.30}
INK_BY_SITE = {"A": 0.10, "B": 0.10, "C": 0.30, "X": 0.20}
DEVICE_CAST = {
    "dermlite": (1.0, 1.0, 1.0),
    "molemax": (1.05, 0.98, 0.92),
    "phone": (0.96, 1.0, 1.07),
    "heine": (1.08, 0.94, 0.88),
}
DEVICE_VIGNETTE = {"dermlite": 0.45, "molemax": 0.15, "phone": 0.0, "heine": 0.6}
DEVICE_GRAIN = {"dermlite": 0.012, "molemax": 0.018, "phone": 0.035, "heine": 0.02}

# Per-diagnosis means of the ABCD features (radius as a fraction of the half-width).
FEATURES = {
    #                 size  asym  border variegation vessels softness
    "nevus": (0.27, 0.04, 0.03, 0.10, 0.0, 0.10),
    "melanoma": (0.36, 0.22, 0.14, 0.75, 0.0, 0.12),
    "bcc": (0.30, 0.12, 0.07, 0.30, 0.7, 0.16),
    "seborrheic_keratosis": (0.33, 0.08, 0.05, 0.35, 0.0, 0.05),
}
PIGMENTS = {  # two pigment colours per diagnosis, mixed by variegation
    "nevus": ((0.50, 0.32, 0.20), (0.38, 0.24, 0.15)),
    "melanoma": ((0.22, 0.13, 0.10), (0.38, 0.42, 0.52)),
    "bcc": ((0.86, 0.58, 0.58), (0.96, 0.86, 0.86)),
    "seborrheic_keratosis": ((0.58, 0.44, 0.30), (0.36, 0.27, 0.18)),
}


def ita_to_rgb(ita: np.ndarray, b_star: np.ndarray, a_star: np.ndarray) -> np.ndarray:
    """CIELAB skin colour from the typology angle ITA = atan((L* - 50) / b*), then sRGB."""
    lightness = np.clip(50 + b_star * np.tan(np.radians(np.clip(ita, -75, 75))), 15, 92)
    fy = (lightness + 16) / 116
    fx, fz = fy + a_star / 500, fy - b_star / 200

    def f_inv(t):
        return np.where(t > 6 / 29, t**3, 3 * (6 / 29) ** 2 * (t - 4 / 29))

    xyz = np.stack([0.9505 * f_inv(fx), f_inv(fy), 1.089 * f_inv(fz)], axis=1)
    m = np.array([[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415], [0.0557, -0.2040, 1.0570]])
    linear = np.clip(xyz @ m.T, 0, 1)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)


def _features(dx: np.ndarray, cfg) -> np.ndarray:
    """ABCD feature means per diagnosis, pulled towards their average by ``subtlety``."""
    table = by_value(dx, FEATURES)
    average = np.mean(list(FEATURES.values()), axis=0)
    return average + (1 - cfg["subtlety"]) * (table - average)


def _diagnosis(v):
    old = (v["age"] - 50) / 20
    light = np.isin(v["skin_type"], SKIN_TYPES[:3]).astype(float)
    male = (v["sex"] == "M").astype(float)
    logits = np.stack(
        [
            1.3 - 0.6 * old,
            -0.7 + 0.4 * old + 0.35 * light,
            -1.1 + 0.9 * old + 0.5 * light + 0.2 * male,
            -0.9 + 0.8 * old,
        ],
        axis=1,
    )
    return categorical(v["u_dx"], softmax(logits), CLASSES)


def _hair(v):
    # Terminal hair over the lesion in most men, few women (0.55 vs 0.15 before): chosen by the
    # counterfactual-judge control, whose sex judge found "M" in 0.56 of exact do(sex=M) images.
    p = np.where(v["sex"] == "M", 0.85, 0.1) + 0.002 * (v["age"] - 50)
    return np.where(v["u_hair"] < p, 0.35 + 0.65 * v["u_hair_amount"], 0.0)


def _photoageing(v):
    """Sun damage in [0, 1] that grows with age: solar lentigines (brown spots) on the skin.

    Added for the counterfactual-judge control: without a sign of age, the age judge predicted
    one group (hit rate 0.0 on exact do(age=75) images).
    """
    return np.clip((v["age"] - 30) / 45 + 0.08 * v["u_photo"], 0, 1)


def _contrast(v):
    # Melanin lowers lesion contrast: full on type I, about half on type VI.
    darkness = 1 / (1 + np.exp((v["ita"] - 10) / 15))
    return np.clip((0.85 + 0.08 * v["u_contrast"]) * (1 - 0.5 * darkness), 0.2, 1)


def mechanisms() -> list[Mechanism]:
    """The skin SCM, parents before children."""
    u, n = "uniform", "normal"
    return [
        Mechanism("site", (), {"u_site": u}, lambda v: categorical(v["u_site"], np.array(SITE_PROBS), SITES), "external", SITES),
        Mechanism("sex", (), {"u_sex": u}, lambda v: np.where(v["u_sex"] < 0.5, "F", "M").astype(object), "patient", ("F", "M")),
        Mechanism("age", ("site",), {"u_age": n}, lambda v: np.clip(50 + 17 * v["u_age"] + 5 * (v["site"] == "X"), 18, 90).round(), "patient", bounds=(18, 90)),
        Mechanism("age_group", ("age",), {}, lambda v: np.where(v["age"] >= 60, "old", "young").astype(object), "patient", ("young", "old"), derived=True),
        Mechanism("photoageing", ("age",), {"u_photo": n}, _photoageing, "appearance", bounds=(0, 1)),
        Mechanism("skin_type", ("site",), {"u_skin": u}, lambda v: categorical(v["u_skin"], by_value(v["site"], SKIN_TYPE_BY_SITE), SKIN_TYPES), "patient", SKIN_TYPES),
        Mechanism("skin_group", ("skin_type",), {}, lambda v: np.where(np.isin(v["skin_type"], SKIN_TYPES[:3]), "light", "dark").astype(object), "patient", ("light", "dark"), derived=True),
        Mechanism("ita", ("skin_type",), {"u_ita": n}, lambda v: by_value(v["skin_type"], ITA_CENTRE) + 5 * v["u_ita"], "appearance"),
        Mechanism("diagnosis", ("age", "sex", "skin_type"), {"u_dx": u}, _diagnosis, "disease", CLASSES),
        Mechanism("malignancy", ("diagnosis",), {}, lambda v: np.where(np.isin(v["diagnosis"], MALIGNANT), "malignant", "benign").astype(object), "disease", ("benign", "malignant"), derived=True),
        Mechanism("lesion_size", ("diagnosis", "age"), {"u_size": n}, lambda v: np.clip(_features(v["diagnosis"], v["cfg"])[:, 0] * (1 + 0.18 * v["u_size"]) + 0.001 * (v["age"] - 50), 0.12, 0.6), "appearance", bounds=(0.12, 0.6)),
        Mechanism("asymmetry", ("diagnosis",), {"u_asym": n}, lambda v: np.clip(_features(v["diagnosis"], v["cfg"])[:, 1] + 0.05 * v["u_asym"], 0, 0.45), "appearance", bounds=(0, 0.45)),
        Mechanism("border", ("diagnosis",), {"u_border": n}, lambda v: np.clip(_features(v["diagnosis"], v["cfg"])[:, 2] + 0.03 * v["u_border"], 0, 0.3), "appearance", bounds=(0, 0.3)),
        Mechanism("variegation", ("diagnosis",), {"u_var": n}, lambda v: np.clip(_features(v["diagnosis"], v["cfg"])[:, 3] + 0.15 * v["u_var"], 0, 1), "appearance", bounds=(0, 1)),
        Mechanism("contrast", ("ita",), {"u_contrast": n}, _contrast, "appearance", bounds=(0.2, 1)),
        Mechanism("device", ("site",), {"u_device": u}, lambda v: categorical(v["u_device"], by_value(v["site"], DEVICE_BY_SITE), DEVICES), "external", DEVICES),
        Mechanism("hair", ("sex", "age"), {"u_hair": u, "u_hair_amount": u}, _hair, "external", bounds=(0, 1)),
        Mechanism("ruler", ("site",), {"u_ruler": u}, lambda v: (v["u_ruler"] < by_value(v["site"], RULER_BY_SITE)).astype(np.int64), "external", (0, 1)),
        Mechanism("ink", ("site",), {"u_ink": u}, lambda v: (v["u_ink"] < by_value(v["site"], INK_BY_SITE)).astype(np.int64), "external", (0, 1)),
    ]  # fmt: skip


def render_batch(t, size: int) -> np.ndarray:
    """Draw one batch of skin images (B, 3, H, W) uint8 from its metadata rows ``t``."""
    xx, yy = R.grid(size)
    skin = R.rgb(
        ita_to_rgb(t["ita"].to_numpy(), 15 + 3 * t["u_b"].to_numpy(), 9 + 2 * t["u_a"].to_numpy())
    )
    img = skin * (1 + 0.05 * R.pick(R.smooth_bank(size, 0.25), t["tex_skin"]))
    spots = (R.pick(R.smooth_bank(size, 0.045), t["tex_skin"]) > 1.2).float()
    img = img + 0.6 * R.col(t["photoageing"]) * spots * (
        R.rgb([[0.45, 0.3, 0.18]]) * img / 0.7 - img
    )

    # The lesion: a radius modulated by low harmonics (asymmetry) and higher ones (border).
    cx, cy = R.col(0.25 * t["u_cx"]), R.col(0.25 * t["u_cy"])
    angle, elong = R.col(np.pi * t["u_angle"]), R.col(1 + 0.25 * t["u_elong"])
    dx, dy = xx - cx, yy - cy
    u = dx * torch.cos(angle) + dy * torch.sin(angle)
    v = (dy * torch.cos(angle) - dx * torch.sin(angle)) * elong
    rho, theta = torch.sqrt(u * u + v * v), torch.atan2(v, u)
    asym, border = R.col(t["asymmetry"]), R.col(t["border"])
    phase = R.col(2 * np.pi * t["u_phase"])
    modulation = asym * (
        torch.sin(theta + phase) + 0.6 * torch.sin(2 * theta + 2 * phase)
    ) + border * (torch.sin(5 * theta + 3 * phase) + 0.7 * torch.sin(9 * theta - phase))
    softness = R.col(by_value(t["diagnosis"].to_numpy(), {k: f[5] for k, f in FEATURES.items()}))
    mask = torch.sigmoid(
        (R.col(t["lesion_size"]) * (1 + modulation) - rho) / (softness * R.col(t["lesion_size"]))
    )

    # Subtlety pulls every diagnosis's pigments towards the average pigment, like its shape.
    average = np.mean(list(PIGMENTS.values()), axis=0)
    pull = 1 - t["scm_subtlety"].to_numpy(np.float32)[:, None, None]
    pigments = average + pull * (np.array([PIGMENTS[d] for d in t["diagnosis"]]) - average)
    light = R.col(np.clip(skin.view(-1, 3).mean(1).numpy() / 0.75, 0.25, 1))
    c1, c2 = R.rgb(pigments[:, 0]) * light, R.rgb(pigments[:, 1]) * light
    mix = (
        0.5 + 0.5 * R.col(t["variegation"]) * R.pick(R.smooth_bank(size, 0.15), t["tex_lesion"])
    ).clamp(0, 1)
    alpha = R.col(t["contrast"]) * mask
    img = img + alpha * (c1 + (c2 - c1) * mix - img)

    vessels = R.col(
        _features(t["diagnosis"].to_numpy(), {"subtlety": t["scm_subtlety"].iloc[0]})[:, 4]
    )
    img = img - vessels * mask * R.pick(R.stroke_bank(size, (4, 8), 0.01), t["tex_vessel"]) * R.rgb(
        [[0.0, 0.35, 0.3]]
    )

    # Artifacts: hair, ruler, ink, vignetting, device colour cast and grain.
    hair = R.col(t["hair"]) * R.pick(R.stroke_bank(size), t["tex_hair"])
    img = img + hair * (R.rgb([[0.12, 0.08, 0.06]]) - img)
    img = _ruler(img, t, size, xx, yy)
    ring = torch.exp(-(((R.radius(size) - R.col(0.72 + 0.1 * t["u_ink_r"])) / 0.035) ** 2))
    ink = R.col(t["ink"]) * ring * (R.pick(R.smooth_bank(size, 0.3), t["tex_ink"]) > -0.3)
    img = img + 0.85 * ink * (R.rgb([[0.42, 0.18, 0.55]]) - img)
    vignette = R.col(by_value(t["device"].to_numpy(), DEVICE_VIGNETTE))
    img = img * (1 - vignette * ((R.radius(size) - 0.8) / 0.45).clamp(0, 1) ** 1.5)
    img = img * R.rgb(by_value(t["device"].to_numpy(), DEVICE_CAST))
    grain = R.col(by_value(t["device"].to_numpy(), DEVICE_GRAIN))
    img = img + grain * R.pick(R.grain_bank(size, 3), t["tex_grain"])
    return R.quantise(img)


def _ruler(img, t, size, xx, yy):
    """A pale ruler with dark ticks along one edge (side 0-3 from the sample's noise)."""
    side = np.floor(4 * t["u_ruler_side"].to_numpy()).astype(int)
    along = torch.where(R.col(side % 2 == 0, torch.bool), xx, yy)
    across = torch.where(R.col(side % 2 == 0, torch.bool), yy, xx) * R.col(
        np.where(side < 2, 1, -1)
    )
    band = ((across - 0.78) / 0.015).sigmoid() * R.col(t["ruler"])
    ticks = (torch.cos(along * 40) > 0.6).float() * ((across - 0.86) / 0.01).sigmoid()
    img = img + band * (0.92 - img)
    return img - band * ticks * 0.75 * img


EXTRA_NOISE = {
    "u_a": "normal", "u_b": "normal", "u_cx": "normal", "u_cy": "normal", "u_angle": "uniform",
    "u_elong": "uniform", "u_phase": "uniform", "u_ink_r": "normal", "u_ruler_side": "uniform",
}  # fmt: skip
TEXTURES = ("tex_skin", "tex_lesion", "tex_vessel", "tex_hair", "tex_ink", "tex_grain")


def scm(subtlety: float = 0.15) -> SCM:
    """The skin SCM; ``subtlety`` in [0, 1) pulls the diagnoses' looks together (difficulty)."""
    return SCM(
        modality="skin",
        mechanisms=mechanisms(),
        render=render_batch,
        classes=CLASSES,
        channels=3,
        cfg={"subtlety": subtlety},
        render_noise=EXTRA_NOISE,
        textures=TEXTURES,
    )
