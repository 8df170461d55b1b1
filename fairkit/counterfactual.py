"""Learned counterfactual images and how sound they are, graded against the exact ones.

Abduction: DDIM inversion of the image under its factual condition gives its noise. Action: the
condition is changed as ``do`` says. Prediction: DDIM regeneration from that noise under the new
condition. Soundness follows Monteiro et al. (2023): effectiveness (attribute classifiers agree
with the intervention), composition (the null intervention changes nothing, even repeated) and
reversibility (do then undo returns the image). The causal model's exact counterfactuals
(``fairkit.data.synth.counterfactual``) add what no published tool has: the error of each learned
counterfactual against the true one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from fairkit import seeds
from fairkit.bootstrap import centred_interval, patient_weights
from fairkit.config import JUDGE_DRAW
from fairkit.data import Cohort, synth
from fairkit.fairness import positive_scores
from fairkit.models import diffusion
from fairkit.training import TrainConfig, fit_attribute, predict
from fairkit.verdicts import higher_is_better, verdict


def abduct(model: diffusion.ConditionalUNet, cohort: Cohort, *, steps: int = 50) -> torch.Tensor:
    """Abduction: each image's noise, by DDIM inversion under its own (factual) condition.

    It does not depend on the intervention, so one abduction serves every counterfactual of
    the same images (pass it to ``regenerate``, ``paired`` or ``composition`` as ``noise``).
    """
    factual = model.conditions.codes(cohort.meta)
    return diffusion.invert(model, diffusion.to_model_range(cohort.images), factual, steps=steps)


def regenerate(
    model: diffusion.ConditionalUNet,
    cohort: Cohort,
    target: pd.DataFrame,
    *,
    steps: int = 50,
    guidance: float = 1.0,
    noise: torch.Tensor | None = None,
) -> Cohort:
    """Each image redrawn under the condition of the same row of ``target``.

    Abduction (unless ``noise``, the cohort's ``abduct`` at the same ``steps``, is given),
    action and prediction; the returned cohort carries ``target`` as metadata.
    """
    wanted = model.conditions.codes(target)
    if noise is None:
        noise = abduct(model, cohort, steps=steps)
    elif len(noise) != len(cohort):
        raise ValueError(f"noise holds {len(noise)} images, the cohort {len(cohort)}")
    images = diffusion.sample(
        model, wanted, sampler="ddim", steps=steps, guidance=guidance, noise=noise, clip=False
    )
    return Cohort(
        diffusion.to_uint8(images), target.reset_index(drop=True), cohort.modality, cohort.classes
    )


def counterfactual(
    model: diffusion.ConditionalUNet,
    cohort: Cohort,
    do: dict,
    *,
    steps: int = 50,
    guidance: float = 1.0,
    noise: torch.Tensor | None = None,
) -> Cohort:
    """The learned counterfactual of every image under ``do`` (same call as the exact one).

    ``do`` maps conditioning attributes to one value, or one value per image; ``do={}`` redraws
    every image under its own condition (should return it unchanged). ``noise``: the cohort's
    ``abduct``, when already computed.
    """
    vocabulary = model.conditions.vocabulary
    target = cohort.meta.copy()
    for name, value in do.items():
        if name not in vocabulary:
            raise ValueError(
                f"cannot intervene on {name!r}: the model is conditioned on {list(vocabulary)}"
            )
        values = np.broadcast_to(np.asarray(value, dtype=object).astype(str), (len(cohort),))
        bad = sorted(set(values) - set(vocabulary[name]))
        if bad:
            raise ValueError(f"{name}={bad} is not one of {vocabulary[name]}")
        target[name] = values
    return regenerate(model, cohort, target, steps=steps, guidance=guidance, noise=noise)


def pixel_l1(a: Cohort | np.ndarray, b: Cohort | np.ndarray) -> np.ndarray:
    """Mean absolute pixel difference per image, in [0, 1] intensity units."""
    a = a.images if isinstance(a, Cohort) else a
    b = b.images if isinstance(b, Cohort) else b
    return np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).mean(axis=(1, 2, 3)) / 255


def composition(
    model,
    cohort: Cohort,
    *,
    repeats: int = 2,
    steps: int = 50,
    guidance: float = 1.0,
    noise: torch.Tensor | None = None,
) -> pd.DataFrame:
    """L1 distance to the original after the null intervention applied 1..``repeats`` times.

    ``noise``: the cohort's ``abduct``, when already computed (it serves the first repeat).
    """
    rows, current = [], cohort
    for k in range(1, repeats + 1):
        current = counterfactual(
            model, current, {}, steps=steps, guidance=guidance, noise=noise if k == 1 else None
        )
        rows.append({"repeats": k, "l1": float(pixel_l1(cohort, current).mean())})
    return pd.DataFrame(rows)


def effectiveness(classifier: nn.Module, cohort: Cohort, *, attribute: str, value) -> float:
    """Share of images that an attribute classifier (trained on real images) assigns ``value``."""
    table = predict(classifier, cohort)
    classes = [c[len("score_") :] for c in table if c.startswith("score_")]
    if str(value) not in classes:
        raise ValueError(f"the classifier knows {classes}, not {value!r}")
    return float((table["y_pred"] == classes.index(str(value))).mean())


def against_exact(
    learned: Cohort, exact: Cohort, *, by: str, classifier: nn.Module | None = None
) -> pd.DataFrame:
    """Per group of ``by``: pixel L1 of learned against exact counterfactuals.

    Given an attribute classifier, also how often it labels the learned and the exact image alike.
    """
    frame = pd.DataFrame({by: exact.meta[by].astype(str), "l1": pixel_l1(learned, exact)})
    if classifier is not None:
        same = (
            predict(classifier, learned)["y_pred"].to_numpy()
            == predict(classifier, exact)["y_pred"].to_numpy()
        )
        frame["agreement"] = same
    return frame.groupby(by).mean().reset_index()


def image_mean(values: np.ndarray, *, n_boot: int, seed: int, stream: str) -> tuple:
    """Mean of per-image values and its centred 95% bootstrap interval over images."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return np.nan, np.nan, np.nan
    weights = patient_weights(np.arange(len(values)), n_boot, seeds.stream(seed, stream))
    mean = float(values.mean())
    return (mean, *centred_interval(mean, weights @ values / len(values)))


def flip_rates(
    classifier: nn.Module,
    original: Cohort,
    changed: Cohort,
    *,
    by: str,
    positive: str,
    threshold: float,
    label_changed: np.ndarray | None = None,
    n_boot: int = 200,
    seed: int = 0,
) -> pd.DataFrame:
    """Counterfactual fairness audit: per group, how often the decision flips under ``do``.

    Decisions are the score of class ``positive`` >= ``threshold`` (chosen on validation data). With
    ``label_changed`` (whether the intervention changed each image's true label, known for
    exact counterfactuals), flips are split: where the label changed a flip is the right answer;
    where it did not, a flip is counterfactually unfair. Intervals: centred bootstrap over images.
    """
    before = positive_scores(predict(classifier, original), positive) >= threshold
    after = positive_scores(predict(classifier, changed), positive) >= threshold
    frame = pd.DataFrame(
        {
            by: original.meta[by].astype(str).to_numpy(),
            "true_label": "unchanged" if label_changed is None else
            np.where(label_changed, "changed", "unchanged"),
            "flip": (before != after).astype(float),
        }
    )  # fmt: skip
    rows = []
    for (group, label), part in frame.groupby([by, "true_label"]):
        rate, lo, hi = image_mean(part["flip"], n_boot=n_boot, seed=seed, stream="flip bootstrap")
        rows.append({by: group, "true_label": label, "flip_rate": rate, "lo": lo, "hi": hi,
                     "n": len(part)})  # fmt: skip
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- the chapter's study

MIRROR_SKIN_TYPE = {"I": "VI", "II": "V", "III": "IV", "IV": "III", "V": "II", "VI": "I"}


# The attribute whose classifier judges each intervention: skin type by its group, age by its
# group, the disease by malignancy (a four-class diagnosis judge found "nevus" in 0.23 of exact
# do(diagnosis=nevus) images, mistaking it for the other benign lesion: not the question asked).
JUDGED = {"do(skin type)": "skin_group", "do(sex)": "sex", "do(age)": "age_group",
          "do(disease)": "malignancy"}  # fmt: skip


def fit_judges(
    make_model, config: TrainConfig, *, n_train: int, image_size: int, seed: int
) -> dict[str, tuple]:
    """Chapter 4's judges: per intervention, (attribute, classifier, classes) of real skin images.

    Each learns from a fresh draw of ``JUDGE_DRAW`` times the chapter's training images (not the
    generator's, so the judge is not graded on what the generator saw), is selected on another
    fresh draw, and draws its classes equally often.
    """
    train, val = (
        synth.generate("skin", n, seed=seeds.stream(seed, stream), image_size=image_size)
        for n, stream in ((JUDGE_DRAW * n_train, "judges"), (max(n_train // 4, 64), "judges val"))
    )
    judges = {}
    for name, attribute in JUDGED.items():
        judge, classes = fit_attribute(
            make_model, train, val, attribute=attribute, config=config, balanced=True
        )
        judges[name] = (attribute, judge, classes)
    return judges


def skin_interventions(meta: pd.DataFrame) -> dict[str, dict]:
    """Exact interventions that change each image's attribute to the other group's value.

    Skin type mirrored (I <-> VI, II <-> V, III <-> IV), sex swapped, age moved across 60
    (to 35 or 75 years), disease: benign lesions made melanoma and malignant ones nevus.
    """
    malignant = meta["diagnosis"].isin(["melanoma", "bcc"]).to_numpy()
    return {
        "do(skin type)": {"skin_type": meta["skin_type"].map(MIRROR_SKIN_TYPE).to_numpy()},
        "do(sex)": {"sex": np.where(meta["sex"] == "F", "M", "F").astype(object)},
        "do(age)": {"age": np.where(meta["age_group"] == "old", 35.0, 75.0)},
        "do(disease)": {"diagnosis": np.where(malignant, "nevus", "melanoma").astype(object)},
    }


@dataclass
class Pair:
    """The exact and the learned counterfactual of the same images under one intervention."""

    original: Cohort
    exact: Cohort
    learned: Cohort


def paired(
    model: diffusion.ConditionalUNet,
    cohort: Cohort,
    do: dict,
    *,
    steps: int = 50,
    guidance: float = 1.0,
    noise: torch.Tensor | None = None,
) -> Pair:
    """Exact counterfactual from the causal model; learned one asked for the same condition.

    The learned model is conditioned on the values that the exact counterfactual's variables
    take (e.g. do(age=75) sets age group to old), so both answer the same question. ``noise``:
    the cohort's ``abduct``, when already computed.
    """
    exact = synth.counterfactual(cohort, do)
    learned = regenerate(model, cohort, exact.meta, steps=steps, guidance=guidance, noise=noise)
    return Pair(cohort, exact, learned)


def direction(original: pd.Series, target: pd.Series) -> np.ndarray:
    """``from → to`` for a two-valued attribute, ``→ to`` for one with more values."""
    two = len(set(original.astype(str)) | set(target.astype(str))) <= 2
    to = target.astype(str).to_numpy()
    return np.array([f"{a} → {b}" for a, b in zip(original.astype(str), to, strict=True)]) if two \
        else np.array([f"→ {b}" for b in to])  # fmt: skip


def soundness(
    model: diffusion.ConditionalUNet,
    pairs: dict[str, Pair],
    judges: dict[str, tuple],
    *,
    steps: int = 50,
    guidance: float = 1.0,
    reversibility: bool = True,
) -> pd.DataFrame:
    """Per image and intervention: effectiveness, reversibility and error against the exact one.

    ``judges`` maps an intervention to (attribute, classifier, classes): a classifier of the
    intervened attribute trained on real images. Effectiveness is whether it finds the target
    value in the learned image (and, to validate the judge, in the exact one); reversibility the
    L1 distance to the original after undoing the intervention (left out when ``reversibility``
    is False: it costs an inversion and a regeneration per image); agreement whether the judge
    says the same of the learned and the exact counterfactual. ``soundness_summary`` aggregates.
    """
    rows = []
    for name, pair in pairs.items():
        attribute, classifier, classes = judges[name]
        wanted = pair.exact.meta[attribute].astype(str).to_numpy()
        found = {
            kind: np.asarray(classes)[predict(classifier, c.relabel(attribute, classes))["y_pred"]]
            for kind, c in (("learned", pair.learned), ("exact", pair.exact))
        }
        scores = pd.DataFrame(
            {
                "intervention": name,
                "direction": direction(pair.original.meta[attribute], pair.exact.meta[attribute]),
                "target": wanted,
                "effectiveness": found["learned"] == wanted,
                "effectiveness_exact": found["exact"] == wanted,
                "l1_to_exact": pixel_l1(pair.learned, pair.exact),
                "agreement_with_exact": found["learned"] == found["exact"],
                "change_exact": pixel_l1(pair.original, pair.exact),
            }
        )
        if reversibility:
            undone = regenerate(
                model, pair.learned, pair.original.meta, steps=steps, guidance=guidance
            )
            scores["reversibility_l1"] = pixel_l1(pair.original, undone)
        rows.append(scores)
    return pd.concat(rows, ignore_index=True)


SOUNDNESS_METRICS = ("effectiveness", "effectiveness_exact", "l1_to_exact", "reversibility_l1",
                     "agreement_with_exact", "change_exact")  # fmt: skip


def judge_validity(images: pd.DataFrame, *, n_boot: int, seed: int) -> pd.DataFrame:
    """Per intervention: the judge's balanced accuracy on the *exact* counterfactuals.

    The mean over target values of how often the judge finds the value the causal model set,
    with a centred bootstrap interval; chance is one over the number of target values. A judge
    whose interval does not lie above chance cannot tell the attribute and is marked invalid.
    """
    rows = []
    for name, part in images.groupby("intervention", sort=False):
        targets = sorted(part["target"].unique())
        weights = patient_weights(np.arange(len(part)), n_boot, seeds.stream(seed, "judge", name))
        hit = part["effectiveness_exact"].to_numpy(float)
        per_target = [(part["target"] == t).to_numpy(float) for t in targets]
        point = np.mean([hit[m > 0].mean() for m in per_target])
        with np.errstate(invalid="ignore", divide="ignore"):
            boot = np.nanmean([(weights @ (hit * m)) / (weights @ m) for m in per_target], axis=0)
        lo, hi = centred_interval(point, boot)
        chance = 1 / len(targets)
        rows.append({"intervention": name, "balanced_accuracy": point, "lo": lo, "hi": hi,
                     "chance": chance, "valid": lo > chance, "n": len(part)})  # fmt: skip
    return pd.DataFrame(rows)


def soundness_summary(images: pd.DataFrame, *, n_boot: int, seed: int) -> pd.DataFrame:
    """Per intervention and direction: each score's mean and 95% interval over images.

    Effectiveness and agreement, which rest on the judge, are withheld (NaN) for an intervention
    whose judge is invalid (``judge_validity``); the pixel distances do not need a judge.
    """
    valid = judge_validity(images, n_boot=n_boot, seed=seed).set_index("intervention")["valid"]
    rows = []
    for (name, way), part in images.groupby(["intervention", "direction"], sort=False):
        for metric in [m for m in SOUNDNESS_METRICS if m in images]:
            value, lo, hi = image_mean(part[metric], n_boot=n_boot, seed=seed, stream=metric)
            if metric in ("effectiveness", "agreement_with_exact") and not valid[name]:
                value = lo = hi = np.nan
            rows.append({"intervention": name, "direction": way, "metric": metric,
                         "value": value, "lo": lo, "hi": hi, "n": len(part),
                         "judge_valid": bool(valid[name])})  # fmt: skip
    return pd.DataFrame(rows)


def effectiveness_against_chance(summary: pd.DataFrame, validity: pd.DataFrame) -> pd.DataFrame:
    """Learned effectiveness minus the judge's chance level, per intervention and direction.

    Rows in the form of ``verdicts.COMPARISON_KEYS`` (comparison "soundness", a "learned",
    b "chance"), so a sweep pools them like any comparison; NaN where the judge is invalid.
    """
    chance = validity.set_index("intervention")["chance"]
    rows = summary[summary["metric"] == "effectiveness"]
    offset = rows["intervention"].map(chance)
    out = pd.DataFrame(
        {
            "comparison": "soundness",
            "setting": rows["intervention"],
            "a": "learned",
            "b": "chance",
            "group": rows["direction"],
            "metric": "effectiveness",
            "a_value": rows["value"],
            "b_value": offset,
            "value": rows["value"] - offset,
            "lo": rows["lo"] - offset,
            "hi": rows["hi"] - offset,
        }
    )
    out["verdict"] = [
        verdict(lo, hi, higher_better=higher_is_better("effectiveness"))
        for lo, hi in zip(out["lo"], out["hi"], strict=True)
    ]
    return out.reset_index(drop=True)


SAMPLER_SETTINGS = (("ddpm", 1000), ("ddim", 10), ("ddim", 20), ("ddim", 50),
                    ("dpmsolver", 10), ("dpmsolver", 20))  # fmt: skip


def compare_samplers(
    model: diffusion.ConditionalUNet,
    wanted: pd.DataFrame,
    judge: nn.Module,
    *,
    attribute: str,
    classes: tuple[str, ...],
    settings=SAMPLER_SETTINGS,
    guidance: float = 2.0,
    seed: int = 0,
) -> pd.DataFrame:
    """Seconds per image and how often ``judge`` finds the requested ``attribute``, per sampler.

    ``wanted`` holds one row of conditions per image to draw. Each sampler first draws a
    warm-up batch, so that first-call costs (kernels, allocations) are not charged to its steps.
    """
    codes = model.conditions.codes(wanted)
    rows = []
    for sampler, steps in settings:
        diffusion.sample(model, codes, sampler=sampler, steps=2, guidance=guidance)
        start = time.perf_counter()
        images = diffusion.sample(
            model,
            codes,
            sampler=sampler,
            steps=steps,
            guidance=guidance,
            generator=seeds.torch_generator(seed, "sampler noise"),
        )
        seconds = (time.perf_counter() - start) / len(wanted)
        made = Cohort(diffusion.to_uint8(images), wanted.assign(label=0), "generated", classes)
        found = np.asarray(classes)[predict(judge, made)["y_pred"].to_numpy()]
        rows.append(
            {
                "sampler": sampler,
                "steps": steps,
                "seconds_per_image": seconds,
                "agreement": float((found == wanted[attribute].astype(str).to_numpy()).mean()),
            }
        )
    return pd.DataFrame(rows)
