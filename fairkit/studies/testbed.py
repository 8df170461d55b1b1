"""Can this testbed test the claims? Its positive controls and the validity of its instruments.

A method can only be seen to remove a bias that the testbed puts in and that its instruments can
see. Before any method is judged, each modality must show, per seed (pooled by ``pooled``):

(a) *under-representation hurts the minority*: ERM with the minority at 10% of training
    instead of 50% (the majority's images fixed, chapter 2's design) loses minority AUROC on the
    balanced test set, and more than the majority loses;
(b) *the oracle helps*: the 10% training set plus real images of the rare (group, finding)
    cells, as many as FairGen's square-root rule asks (chapter 5's oracle), recovers at least
    half of that loss;
(c) *the instruments see*: classifiers of group and of finding trained on real images, as
    chapter 5's rater and judges are, tell their classes on real test images;
(d) *the counterfactual judges see*: a judge of each intervened attribute finds the value that
    an exact counterfactual of the causal model set, in each direction.

The causal models' knobs were chosen on (a)-(d) alone, never on a method's result (each knob
names its control where it is set). ``GATES`` holds the thresholds.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from fairkit import counterfactual as cf
from fairkit import seeds
from fairkit.config import Settings
from fairkit.data import synth
from fairkit.experiment import Experiment
from fairkit.methods import Augment
from fairkit.rater import rater_validity
from fairkit.studies import fairgen
from fairkit.training import predict
from fairkit.verdicts import fieller, interval, paired_difference, t_interval

UNDER, BALANCED = 0.1, 0.5  # the minority's share of training in the two arms of (a)
# Each control's quantity and what its pooled estimate must reach; ``gates`` reads them.
GATES = {
    "(a) minority loss": ("minority_loss", 0.05),  # mean >= 0.05 and interval above 0
    "(a) loss beyond the majority's": ("excess_loss", 0.0),  # interval above 0
    "(b) oracle recovery": ("oracle_recovery", 0.5),  # mean >= 0.5 and interval above 0
    "(c) group judge": ("group_judge", 0.85),  # balanced accuracy, mean
    "(c) finding judge": ("pathology_judge", 0.85),
    "(d) counterfactual judge": ("exact_counterfactual_hit_rate", 0.8),  # per direction
}


def representation(modality: str, settings: Settings, *, seed: int, device: str) -> pd.DataFrame:
    """Controls (a) and (b) of one seed: AUROC losses at 10% vs 50% and the oracles' gains.

    One row per quantity, each a paired difference on the same balanced test set:
    ``minority_loss``, ``majority_loss``, ``excess_loss`` (minority minus majority),
    ``oracle_gain`` (the minority's AUROC with chapter 5's oracle minus without: FairGen's
    square-root plan over every cell, the majority's rare findings included) and
    ``minority_oracle_gain`` (the same plan's images of the minority's cells only), with the
    minority's AUROC in each arm (``minority_auroc_*``) for scale.
    """
    experiment = Experiment(modality, settings, seed, device, fixed_majority=True)
    task = experiment.task
    rare = experiment.scenario("under", UNDER)
    plan = fairgen.cells(rare, rule="sqrt_inverse")
    extra = fairgen.oracle(rare, plan, seed=seeds.stream(seed, "testbed oracle"))
    minority_only = extra.subset(np.flatnonzero(extra.meta[task.attribute] == task.minority))
    with tempfile.TemporaryDirectory() as folder:
        reports = {f: experiment.report("erm", "under", f) for f in (UNDER, BALANCED)}
        for name, images in (("oracle", extra), ("minority_oracle", minority_only)):
            images.save(Path(folder) / name)
            method = Augment(name=name, extra=str(Path(folder) / name))
            reports[name] = experiment.evaluate(rare.predictions(method))
    majority = next(g for g in rare.train.meta[task.attribute].unique() if g != task.minority)

    def change(after, before, group) -> float:
        difference = paired_difference(
            reports[after], reports[before], "auroc", attribute=task.attribute, group=group
        )
        return difference.value

    rows = {
        "minority_loss": change(BALANCED, UNDER, task.minority),
        "majority_loss": change(BALANCED, UNDER, majority),
        "oracle_gain": change("oracle", UNDER, task.minority),
        "minority_oracle_gain": change("minority_oracle", UNDER, task.minority),
        "oracle_images": float(len(extra)),
        "minority_oracle_images": float(len(minority_only)),
    }
    rows["excess_loss"] = rows["minority_loss"] - rows["majority_loss"]
    for arm, report in reports.items():
        by_group = report.by_group.set_index(["attribute", "group", "metric"])["value"]
        rows[f"minority_auroc_{arm}"] = float(by_group[(task.attribute, task.minority, "auroc")])
    return _rows(modality, seed, rows)


def instruments(modality: str, settings: Settings, *, seed: int, device: str) -> pd.DataFrame:
    """Control (c) of one seed: balanced accuracy of the group and finding classifiers.

    Chapter 5's judges (``fairgen.fit_judges``) at FairGen's image size, scored on its balanced
    real test images.
    """
    scenario = fairgen.setting(
        modality, settings, seed=seed, device=device, minority_fraction=UNDER
    )
    rater = fairgen.fit_judges(scenario, settings=settings, seed=seed)
    validity = rater_validity(
        rater, fairgen.with_finding(scenario.test), n_boot=settings.n_boot, seed=seed
    )
    values = dict(zip(validity["component"], validity["balanced_accuracy"], strict=True))
    return _rows(modality, seed, {f"{c}_judge": v for c, v in values.items()})


def counterfactual_judges(settings: Settings, *, seed: int, device: str) -> pd.DataFrame:
    """Control (d) of one seed: each chapter-4 judge's hit rate on exact counterfactuals.

    Chapter 4's judges (``counterfactual.fit_judges``) and interventions, applied exactly by the
    causal model to ``4 n_counterfactual`` fresh skin images. One row per intervention and
    direction.
    """
    experiment = Experiment("skin", settings, seed, device)
    judges = cf.fit_judges(experiment.make_model, experiment.config(), n_train=settings.n_train,
                           image_size=settings.image_size, seed=seed)  # fmt: skip
    test = synth.generate("skin", 4 * settings.n_counterfactual, image_size=settings.image_size,
                          seed=seeds.stream(seed, "testbed counterfactuals"))  # fmt: skip
    rows = []
    for name, do in cf.skin_interventions(test.meta).items():
        attribute, judge, classes = judges[name]
        exact = synth.counterfactual(test, do)
        found = np.asarray(classes)[predict(judge, exact.relabel(attribute, classes))["y_pred"]]
        hits = pd.DataFrame(
            {
                "direction": cf.direction(test.meta[attribute], exact.meta[attribute]),
                "hit": found == exact.meta[attribute].astype(str).to_numpy(),
            }
        )
        for way, part in hits.groupby("direction"):
            rows.append({"quantity": "exact_counterfactual_hit_rate", "intervention": name,
                         "direction": way, "value": float(part["hit"].mean()),
                         "images": len(part)})  # fmt: skip
    return pd.DataFrame(rows).assign(modality="skin", seed=seed)


def controls(
    settings: Settings, *, seed: int, device: str, modalities=tuple(synth.MODALITIES)
) -> pd.DataFrame:
    """Controls (a)-(d) of one seed, every modality: the rows ``pooled`` pools over seeds."""
    parts = [
        control(m, settings, seed=seed, device=device)
        for m in modalities
        for control in (representation, instruments)
    ]
    if "skin" in modalities:
        parts.append(counterfactual_judges(settings, seed=seed, device=device))
    return pd.concat(parts, ignore_index=True)


def _rows(modality: str, seed: int, values: dict[str, float]) -> pd.DataFrame:
    """One row per named value of one modality and seed."""
    return pd.DataFrame(
        {
            "modality": modality,
            "seed": seed,
            "quantity": list(values),
            "value": list(values.values()),
        }
    )


def pooled(table: pd.DataFrame) -> pd.DataFrame:
    """Per modality and quantity: the mean over seeds with its t interval.

    The oracle's recovery is a ratio of means over seeds (gain / loss), with Fieller's interval.
    """
    keys = [c for c in ("modality", "quantity", "intervention", "direction") if c in table]
    rows = []
    for key, part in table.groupby(keys, dropna=False, sort=False):
        mean, lo, hi = t_interval(part["value"])
        rows.append({**dict(zip(keys, key, strict=True)), "value": mean, "lo": lo, "hi": hi,
                     "seeds": part["seed"].nunique()})  # fmt: skip
    for modality, part in table.groupby("modality"):
        wide = part.pivot_table(index="seed", columns="quantity", values="value")
        for gain in ("oracle", "minority_oracle"):
            if {f"{gain}_gain", "minority_loss"} <= set(wide):
                value, lo, hi = fieller(wide[f"{gain}_gain"], wide["minority_loss"])
                rows.append({"modality": modality, "quantity": f"{gain}_recovery",
                             "value": value, "lo": lo, "hi": hi, "seeds": len(wide)})  # fmt: skip
    return pd.DataFrame(rows)


def gates(pooled_table: pd.DataFrame) -> pd.DataFrame:
    """Each control against its threshold: the estimate, its interval, pass and margin.

    A control passes when its mean reaches the threshold and, for (a) and (b), its interval
    also excludes zero (for (a)'s excess, its lower bound is the test). The margin is how far
    the deciding number lies beyond the threshold (negative: fails by that much). With one seed
    there is no interval: such a control is not judged (``passes`` is None, margin NaN).
    """
    rows = []
    for control, (quantity, threshold) in GATES.items():
        for _, r in pooled_table[pooled_table["quantity"] == quantity].iterrows():
            if quantity == "excess_loss":
                margin = r["lo"] - threshold
            elif quantity in ("minority_loss", "oracle_recovery"):
                margin = np.nan if np.isnan(r["lo"]) else min(r["value"] - threshold, r["lo"])
            else:
                margin = r["value"] - threshold
            where = [str(r[c]) for c in ("intervention", "direction") if pd.notna(r.get(c))]
            rows.append({"modality": r["modality"], "control": " ".join([control, *where]),
                         "value": r["value"], "lo": r["lo"], "hi": r["hi"], "seeds": r["seeds"],
                         "threshold": threshold, "margin": float(margin),
                         "passes": None if np.isnan(margin) else bool(margin > 0)})  # fmt: skip
    return pd.DataFrame(rows)


def found(gates_table: pd.DataFrame | None) -> str:
    """One Markdown line for *What we found*: how many controls pass, and which fail by how much."""
    if gates_table is None:
        return "- The testbed's controls were not computed in this run and no sweep is kept."
    judged = gates_table[gates_table["passes"].notna()]
    seeds_pooled = int(gates_table["seeds"].max())
    line = (
        f"- **{int(judged['passes'].astype(bool).sum())} of {len(gates_table)}** testbed controls "
        f"pass (pooled over {seeds_pooled} seed(s))"
    )
    if len(judged) < len(gates_table):
        line += f"; {len(gates_table) - len(judged)} need two seeds or more for an interval"
    failed = judged[~judged["passes"].astype(bool)]
    if failed.empty:
        return line + "."
    misses = "; ".join(
        f"{r.modality} {r.control}: {_shown(r)} against {r.threshold:g}"
        for r in failed.itertuples()
    )
    return line + f". Failing, so the claims that need them are untestable here: {misses}."


def _shown(row) -> str:
    """The estimate with its interval, or alone where one seed gives none."""
    if np.isnan(row.lo) or np.isnan(row.hi):
        return f"{row.value:.3f}"
    return interval(row.value, row.lo, row.hi)
