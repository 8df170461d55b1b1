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
from torch import nn

from fairkit import seeds
from fairkit.data import Cohort, synth
from fairkit.models import diffusion
from fairkit.training import predict


def regenerate(
    model: diffusion.ConditionalUNet,
    cohort: Cohort,
    target: pd.DataFrame,
    *,
    steps: int = 50,
    guidance: float = 1.0,
) -> Cohort:
    """Each image redrawn under the condition of the same row of ``target``.

    Abduction, action and prediction in one; the returned cohort carries ``target`` as metadata.
    """
    factual = model.conditions.codes(cohort.meta)
    wanted = model.conditions.codes(target)
    noise = diffusion.invert(model, diffusion.to_model_range(cohort.images), factual, steps=steps)
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
) -> Cohort:
    """The learned counterfactual of every image under ``do`` (same call as the exact one).

    ``do`` maps conditioning attributes to one value, or one value per image; ``do={}`` redraws
    every image under its own condition (should return it unchanged).
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
    return regenerate(model, cohort, target, steps=steps, guidance=guidance)


def pixel_l1(a: Cohort | np.ndarray, b: Cohort | np.ndarray) -> np.ndarray:
    """Mean absolute pixel difference per image, in [0, 1] intensity units."""
    a = a.images if isinstance(a, Cohort) else a
    b = b.images if isinstance(b, Cohort) else b
    return np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).mean(axis=(1, 2, 3)) / 255


def composition(
    model, cohort: Cohort, *, repeats: int = 2, steps: int = 50, guidance: float = 1.0
) -> pd.DataFrame:
    """L1 distance to the original after the null intervention applied 1..``repeats`` times."""
    rows, current = [], cohort
    for k in range(1, repeats + 1):
        current = counterfactual(model, current, {}, steps=steps, guidance=guidance)
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


def flip_rates(
    classifier: nn.Module,
    original: Cohort,
    changed: Cohort,
    *,
    by: str,
    threshold: float = 0.5,
    n_boot: int = 200,
    seed: int = 0,
) -> pd.DataFrame:
    """Counterfactual fairness audit: per group, how often the decision flips under ``do``.

    Decisions are positive-class score >= ``threshold``; intervals are 95% percentile
    bootstrap over images.
    """
    before = _positive(predict(classifier, original)) >= threshold
    after = _positive(predict(classifier, changed)) >= threshold
    flips = (before != after).astype(float)
    groups = original.meta[by].astype(str).to_numpy()
    rng = seeds.rng(seed, "flip bootstrap")
    rows = []
    for group in sorted(set(groups)):
        values = flips[groups == group]
        boot = rng.choice(values, (n_boot, len(values))).mean(1)
        rows.append(
            {
                by: group,
                "flip_rate": values.mean(),
                "lo": np.quantile(boot, 0.025),
                "hi": np.quantile(boot, 0.975),
                "n": len(values),
            }
        )
    return pd.DataFrame(rows)


def _positive(table: pd.DataFrame) -> np.ndarray:
    scores = [c for c in table if c.startswith("score_")]
    return table[scores[-1]].to_numpy()


# --------------------------------------------------------------------------- the chapter's study

MIRROR_SKIN_TYPE = {"I": "VI", "II": "V", "III": "IV", "IV": "III", "V": "II", "VI": "I"}


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
) -> Pair:
    """Exact counterfactual from the causal model; learned one asked for the same condition.

    The learned model is conditioned on the values that the exact counterfactual's variables
    take (e.g. do(age=75) sets age group to old), so both answer the same question.
    """
    exact = synth.counterfactual(cohort, do)
    learned = regenerate(model, cohort, exact.meta, steps=steps, guidance=guidance)
    return Pair(cohort, exact, learned)


def soundness(
    model: diffusion.ConditionalUNet,
    pairs: dict[str, Pair],
    judges: dict[str, tuple],
    *,
    by: str,
    steps: int = 50,
    guidance: float = 1.0,
) -> pd.DataFrame:
    """Per intervention and group: effectiveness, reversibility and error against the exact one.

    ``judges`` maps an intervention to (attribute, classifier, classes): a classifier of the
    intervened attribute trained on real images. Effectiveness is how often it finds the target
    value in the learned image (and, as its ceiling, in the exact one); reversibility the L1
    distance to the original after undoing the intervention; agreement how often the judge
    says the same of the learned and the exact counterfactual.
    """
    rows = []
    for name, pair in pairs.items():
        attribute, classifier, classes = judges[name]
        wanted = pair.exact.meta[attribute].astype(str).to_numpy()
        found = {
            kind: np.asarray(classes)[predict(classifier, c.relabel(attribute, classes))["y_pred"]]
            for kind, c in (("learned", pair.learned), ("exact", pair.exact))
        }
        frame = pd.DataFrame(
            {
                "intervention": name,
                "group": pair.original.meta[by].astype(str).to_numpy(),
                "effectiveness": found["learned"] == wanted,
                "effectiveness_exact": found["exact"] == wanted,
                "l1_to_exact": pixel_l1(pair.learned, pair.exact),
                "reversibility_l1": pixel_l1(
                    pair.original,
                    regenerate(
                        model, pair.learned, pair.original.meta, steps=steps, guidance=guidance
                    ),
                ),
                "agreement_with_exact": found["learned"] == found["exact"],
                "change_exact": pixel_l1(pair.original, pair.exact),
            }
        )
        rows.append(frame.groupby(["intervention", "group"]).mean().reset_index())
    return pd.concat(rows, ignore_index=True)


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
