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

import numpy as np
import pandas as pd
from torch import nn

from fairkit.data import Cohort
from fairkit.models import diffusion as D
from fairkit.train import predict


def regenerate(
    model: D.ConditionalUNet,
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
    noise = D.invert(model, D.to_model_range(cohort.images), factual, steps=steps)
    images = D.sample(
        model, wanted, sampler="ddim", steps=steps, guidance=guidance, noise=noise, clip=False
    )
    return Cohort(
        D.to_uint8(images), target.reset_index(drop=True), cohort.modality, cohort.classes
    )


def counterfactual(
    model: D.ConditionalUNet, cohort: Cohort, do: dict, *, steps: int = 50, guidance: float = 1.0
) -> Cohort:
    """The learned counterfactual of every image under ``do`` (same call as the exact one).

    ``do`` maps conditioning attributes to one value each; ``do={}`` redraws every image under
    its own condition (should return it unchanged).
    """
    vocabulary = model.conditions.vocabulary
    for name, value in do.items():
        if name not in vocabulary:
            raise ValueError(
                f"cannot intervene on {name!r}: the model is conditioned on {list(vocabulary)}"
            )
        if str(value) not in vocabulary[name]:
            raise ValueError(f"{name}={value!r} is not one of {vocabulary[name]}")
    target = cohort.meta.assign(**{k: str(v) for k, v in do.items()})
    return regenerate(model, cohort, target, steps=steps, guidance=guidance)


def pixel_l1(a: Cohort | np.ndarray, b: Cohort | np.ndarray) -> np.ndarray:
    """Mean absolute pixel difference per image, in [0, 1] intensity units."""
    a = a.images if isinstance(a, Cohort) else a
    b = b.images if isinstance(b, Cohort) else b
    return np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).mean(axis=(1, 2, 3)) / 255


def composition(model, cohort: Cohort, *, repeats: int = 2, steps: int = 50) -> pd.DataFrame:
    """L1 distance to the original after the null intervention applied 1..``repeats`` times."""
    rows, current = [], cohort
    for k in range(1, repeats + 1):
        current = counterfactual(model, current, {}, steps=steps)
        rows.append({"repeats": k, "l1": float(pixel_l1(cohort, current).mean())})
    return pd.DataFrame(rows)


def reversibility(model, cohort: Cohort, do: dict, *, steps: int = 50) -> np.ndarray:
    """Per-image L1 between the original and its counterfactual under ``do`` then undone."""
    forward = counterfactual(model, cohort, do, steps=steps)
    back = regenerate(model, forward, cohort.meta, steps=steps)
    return pixel_l1(cohort, back)


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
    rng = np.random.default_rng(seed)
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
