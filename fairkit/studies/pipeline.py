"""Chapter 6, fairness across the pipeline: data, pretraining, adaptation, mitigation, monitoring.

The fair-foundation-model review (Queiroz et al. 2025) argues that fairness needs an
intervention at every stage of a model's life, that self-supervised pretraining tends to be
fairer than supervised training, and that fine-tuning aligns a pretrained model with its
target. One modality at a time, on a training set whose minority is rare (``setting``), the
chapter trains each stage's arm (``arms``): supervised training from scratch, SimCLR encoders
pretrained on three unlabelled pools then probed or fine-tuned, a rebalancing mitigation and a
post-processing; all are paired on the same test patients (``comparisons``), and the stage
table (``stages``) reads what each intervention buys from those rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fairkit import seeds, tuning
from fairkit.config import Settings
from fairkit.data import Cohort, concat, synth
from fairkit.data.bias import UnderRepresent
from fairkit.experiment import Experiment, Scenario
from fairkit.fairness import (
    Report,
    choose_threshold,
    metric_rows,
)
from fairkit.methods import ERM, Method, MethodPredictions, Pretrained, Resample, Threshold
from fairkit.methods.ssl import ADAPTATIONS, OTHER_SITE, POOLS
from fairkit.training import predict
from fairkit.verdicts import INCONCLUSIVE, MIN_SEEDS, interval, narrowing, paired_table

SUPERVISED = "supervised"
PER_GROUP = ("accuracy", "auroc")
GAPS = ("gap_accuracy", "gap_auroc", "equalized_odds")
SHORT = {"linear_probe": "probe", "fine_tune": "fine-tune"}
SHIFTS = ("site", "group_mix", "prevalence")  # what changes in the deployment stream
OTHER_SITE_POOL = "other_site"  # its images come from the external site
RULE = "overall"  # the selection rule of every arm: utility alone, never a fairness criterion


def setting(
    modality: str, settings: Settings, *, seed: int, device: str, minority_fraction: float
) -> Scenario:
    """The chapter's scenario: the audited minority a ``minority_fraction`` of training."""
    experiment = Experiment(modality, settings, seed, device)
    return experiment.scenario("under", minority_fraction)


def arm(adaptation: str, pool: str) -> str:
    """The label of a pretrained arm, e.g. ``probe, same_site``."""
    return f"{SHORT[adaptation]}, {pool}"


def arms(pools=POOLS, *, checkpoint_dir: str | None = None) -> dict[str, Method]:
    """Every stage's arm by label: supervised, pretrained × adaptation, mitigation, post-processing.

    All train on the same labelled images with the same loop, epochs and validation-chosen
    threshold; the supervised arm is the control each intervention is paired with.
    """
    out: dict[str, Method] = {SUPERVISED: ERM()}
    for pool in pools:
        for adaptation in ADAPTATIONS:
            out[arm(adaptation, pool)] = Pretrained(
                adaptation=adaptation, pool=pool, checkpoint_dir=checkpoint_dir
            )
    out["resample"] = Resample()
    out["threshold"] = Threshold()
    return out


COMPARED = (  # (a, b, stage): what each intervention is measured against
    *[(arm(a, "same_site"), SUPERVISED, "pretraining") for a in ADAPTATIONS],
    (arm("linear_probe", "no_minority"), arm("linear_probe", "same_site"), "pretraining"),
    (arm("linear_probe", "other_site"), arm("linear_probe", "same_site"), "pretraining"),
    *[(arm("fine_tune", p), arm("linear_probe", p), "adaptation") for p in POOLS],
    ("resample", SUPERVISED, "mitigation"),
    ("threshold", SUPERVISED, "post-processing"),
)


def train_arms(
    scenario: Scenario, arms_: dict[str, Method], *, lrs, probe_lrs
) -> tuple[dict[str, MethodPredictions], pd.DataFrame]:
    """Each arm's predictions at its own tuned learning rate, and the tuning table.

    Every arm goes through the one protocol (``tuning.tune``) with the same budget: linear
    probes over ``probe_lrs``, whole networks over ``lrs``, each kept by its overall validation
    AUROC (``RULE``, not a fairness criterion), so no arm wins by its settings; post-processing
    acts on the supervised model tuned alike, at no training of its own.
    """
    tuned = {}
    for label, method in arms_.items():
        probe = getattr(method, "adaptation", None) == "linear_probe"
        grid = {"lr": probe_lrs if probe else lrs}
        tuned[label] = tuning.tune(scenario, method, grid=grid, rules=(RULE,))
    predictions = {label: scenario.predictions(t.chosen[RULE]) for label, t in tuned.items()}
    return predictions, tuning.stacked(tuned, key="arm")


def comparisons(reports_: dict[str, Report], *, attribute: str, setting: str) -> pd.DataFrame:
    """Paired differences a - b of ``COMPARED`` (per group and gaps), with their stage.

    On the external site (a ``setting`` ending in "external") arms pretrained on the other-site
    pool are left out: that pool is the external site's population, so their external result
    is domain adaptation, not external validation.
    """
    external = setting.endswith("external")
    rows = [
        paired_table(
            reports_,
            [(a, b)],
            attribute,
            metrics=PER_GROUP,
            gap_metrics=GAPS,
            comparison="pipeline",
            setting=setting,
        ).assign(stage=stage)
        for a, b, stage in COMPARED
        if a in reports_ and b in reports_ and not (external and OTHER_SITE_POOL in a + b)
    ]
    return pd.concat(rows, ignore_index=True)


def group_metrics(reports_: dict[str, Report], *, attribute: str) -> pd.DataFrame:
    """Per arm and group: accuracy and AUROC with 95% intervals, and the gaps (group ``all``)."""
    return metric_rows(reports_, attribute=attribute, metrics=PER_GROUP, gap_metrics=GAPS)


def intended_use(scenario: Scenario) -> str:
    """A model card's intended use: the task, the population and that it is a study model."""
    task = scenario.experiment.task
    return (
        f"Research on fairness: {task.names[1]} vs {task.names[0]} in synthetic "
        f"{scenario.experiment.modality} images of the causal model's training sites, audited "
        f"on {scenario.attribute.replace('_', ' ')}. Not for clinical use."
    )


def card_caveats(method: Method, settings: Settings) -> list[str]:
    """What a model card must add for a pretrained arm: the pool it was pretrained on."""
    if not isinstance(method, Pretrained):
        return []
    what = {"same_site": "the training sites at their natural group mix",
            "no_minority": "the training sites without the audited minority",
            "other_site": "the shifted site, which is also the external test site (its external "
                          "result is domain adaptation, not external validation)"}[method.pool]  # fmt: skip
    return [
        f"The encoder was pretrained (SimCLR, {settings.ssl_steps} steps) on {settings.ssl_pool} "
        f"unlabelled images of {what}; "
        + ("it is frozen (a linear probe)." if method.adaptation == "linear_probe" else "it was then fine-tuned.")
    ]  # fmt: skip


def best_arm(scenario: Scenario, predictions: dict[str, MethodPredictions], candidates) -> str:
    """Among ``candidates``, the arm with the highest worst-group AUROC on *validation* data.

    The chapter's card and monitor show this model; choosing it on the test set would make its
    test numbers optimistic. Post-processed arms (own decisions) are not candidates.
    """
    worst = {
        name: tuning.validation_scores(
            predictions[name].val, attribute=scenario.attribute, positive=scenario.positive
        )["worst_group"]
        for name in candidates
        if "decision" not in predictions[name].val
    }
    if not worst:
        raise ValueError(f"no candidate among {list(candidates)} has its own model and scores")
    defined = pd.Series(worst).dropna()
    if defined.empty:
        raise ValueError(
            f"no candidate among {sorted(worst)} has a validation worst-group AUROC: a group's "
            f"validation images hold one class"
        )
    return defined.idxmax()


def always_trained(pools) -> list[str]:
    """The arms every run trains, whatever ``run_pool_ablation`` says (the first pool's)."""
    first = list(pools)[0]
    return [SUPERVISED, arm("linear_probe", first), arm("fine_tune", first), "resample"]


# --------------------------------------------------------------------------- deployment


def shifted_population(scenario: Scenario, shift: str, *, n: int, seed: int) -> Cohort:
    """``n`` images of the population a stream drifts towards, from the causal model.

    ``site``: the shifted site (another device and population); ``group_mix``: the audited
    minority only; ``prevalence``: the positive finding only.
    """
    e = scenario.experiment
    common = {"seed": seed, "image_size": e.settings.image_size}
    if shift == "site":
        return e.binary(synth.generate(e.modality, n, do={"site": OTHER_SITE}, **common))
    if shift == "group_mix":
        minority = UnderRepresent(scenario.attribute, e.task.minority, 1.0)
        return e.binary(synth.generate(e.modality, n, under=minority, **common))
    if shift == "prevalence":
        for factor in (4, 8, 16, 32):  # enough draws for n positives at any prevalence above 3%
            pool = e.binary(synth.generate(e.modality, factor * n, **common))
            positive = np.flatnonzero(pool.labels == 1)
            if len(positive) >= n:
                return pool.subset(positive[:n])
        raise ValueError(
            f"prevalence shift: {len(positive)} positives in {factor * n} draws, need {n}"
        )
    raise ValueError(f"shift must be one of {SHIFTS}; got {shift!r}")


def deployment_stream(
    scenario: Scenario, fractions: np.ndarray, *, shift: str, batch_size: int, name: str
) -> Cohort:
    """A stream of batches from the training sites, a fraction of each from the shifted population.

    ``fractions`` (``monitoring.shifted_batches``) gives each batch's shifted share; the
    stream's ``batch`` column is its time step. Each stream draws on its own seed stream.
    """
    from fairkit.monitoring import stream_rows

    if shift not in SHIFTS:
        raise ValueError(f"shift must be one of {SHIFTS}; got {shift!r}")
    e = scenario.experiment
    n = len(fractions) * batch_size
    n_shifted = int(np.ceil(np.asarray(fractions) * batch_size).sum())
    base = e.binary(synth.generate(e.modality, n, seed=seeds.stream(e.seed, name, "base"),
                                   image_size=e.settings.image_size))  # fmt: skip
    shifted = (
        shifted_population(
            scenario, shift, n=max(n_shifted, 1), seed=seeds.stream(e.seed, name, "shifted")
        )  # fmt: skip
        if n_shifted
        else None
    )
    rows = stream_rows(len(base), 0 if shifted is None else len(shifted), fractions,
                       batch_size=batch_size, seed=seeds.stream(e.seed, name, "rows"))  # fmt: skip
    parts = []
    for source, cohort in (("base", base), ("shifted", shifted)):
        picked = rows[rows["source"] == source]
        if len(picked):
            part = cohort.subset(picked["row"].to_numpy())
            part.meta["batch"] = picked["batch"].to_numpy()
            parts.append(part)
    stream = concat(parts)
    order = np.argsort(stream.meta["batch"].to_numpy(), kind="stable")
    return stream.subset(order)


def watch(
    scenario: Scenario,
    predictions: MethodPredictions,
    *,
    shift: str,
    n_batches: int,
    batch_size: int,
    onset: int,
    ramp: int,
    magnitude: float,
    device: str,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A trained model monitored per group on a stationary and on a drifting stream.

    The reference is a labelled stationary stream of as many batches (the model's check before
    deployment); both streams are scored by NannyML's label-free estimate at the model's
    validation threshold (``fairkit.monitoring.monitor``). Returns the monitor's table and its
    summary (false-alarm rate, detection, delay), each with a ``stream`` column.
    """
    from fairkit.monitoring import monitor, shifted_batches

    threshold = choose_threshold(predictions.val, positive=scenario.positive)

    def scored(name: str, start: int | None) -> pd.DataFrame:
        fractions = shifted_batches(n_batches, onset=start, ramp=ramp, magnitude=magnitude)
        stream = deployment_stream(scenario, fractions, shift=shift, batch_size=batch_size,
                                   name=name)  # fmt: skip
        return predict(predictions.model, stream, device=device)

    reference = scored("reference", None)
    tables, summaries = [], []
    for name, start in (("stationary", None), (f"{shift} shift", onset)):
        watched = monitor(reference, scored(name, start), attribute=scenario.attribute,
                          positive=scenario.positive, threshold=threshold)  # fmt: skip
        tables.append(watched.table.assign(stream=name))
        summaries.append(watched.summary(onset=start).assign(stream=name))
    return pd.concat(tables, ignore_index=True), pd.concat(summaries, ignore_index=True)


# --------------------------------------------------------------------------- reading the runs


def _row(pooled: pd.DataFrame, a: str, b: str, metric: str, setting: str) -> pd.Series | None:
    hit = pooled[
        (pooled["a"] == a)
        & (pooled["b"] == b)
        & (pooled["metric"] == metric)
        & (pooled["group"] == "all")
        & (pooled["setting"] == setting)
    ]
    return hit.iloc[0] if len(hit) else None


def stages(
    pooled: pd.DataFrame,
    *,
    modalities,
    datasheets: pd.DataFrame | None = None,
    monitored: pd.DataFrame | None = None,
    metric: str = "gap_accuracy",
    split: str = "test",
) -> pd.DataFrame:
    """The stage-by-stage table: per stage and modality, what each intervention buys.

    Data: the datasheet's share of the audited minority in training (``datasheets``: the
    chapter's composition rows with a ``modality`` column). Pretraining to post-processing:
    the paired difference of ``metric`` against the stage's control, read from the pooled (or
    one run's) comparison rows, with its interval, seeds and verdict. Monitoring: the
    label-free monitor on the drifting stream (``monitored``: ``monitoring.pool_summaries``
    rows), against what the true labels flag.
    """
    rows = []
    if datasheets is not None:
        for modality in modalities:
            sheet = datasheets[datasheets["modality"] == modality]
            if sheet.empty:
                continue
            rare = sheet.loc[sheet["share"].idxmin()]
            rows.append({"stage": "data", "intervention": "datasheet of the training set",
                         "modality": modality,
                         "what it buys": f"{rare['group']}: {rare['share']:.1%} of {int(sheet['n'].sum())} "
                                         "training images, documented",
                         "seeds": 1, "verdict": "documented"})  # fmt: skip
    for a, b, stage in COMPARED:
        for modality in modalities:
            row = _row(pooled, a, b, metric, f"{modality}, {split}")
            if row is not None:
                seeds = int(row.get("n_seeds", 1))
                words = (
                    row["verdict"]
                    if seeds >= MIN_SEEDS
                    else f"{INCONCLUSIVE} (this run: {row['verdict']})"
                )
                rows.append({"stage": stage, "intervention": f"{a} vs {b}", "modality": modality,
                             "what it buys": f"{metric} {interval(row['value'], row['lo'], row['hi'])}",
                             "seeds": seeds, "verdict": words})  # fmt: skip
    if monitored is not None:
        for modality in modalities:
            part = monitored[monitored["modality"] == modality]
            drifting = part[part["stream"] != "stationary"]
            quiet = part[part["stream"] == "stationary"].set_index("group")["false_alarm_rate"]
            if drifting.empty:
                continue
            said = "; ".join(
                f"{r.group}: alarms in {r.detected:.0%} of seeds, labels flag {r.realised_detected:.0%}, "
                f"false alarms {quiet.get(r.group, float('nan')):.3f} of stationary batches"
                for r in drifting.itertuples()
            )  # fmt: skip
            rows.append({"stage": "monitoring", "intervention": f"label-free monitor, {drifting['stream'].iloc[0]}",
                         "modality": modality, "what it buys": said, "seeds": int(part["seeds"].max()),
                         "verdict": "—"})  # fmt: skip
    return pd.DataFrame(rows)


def _how_narrowed(pooled: pd.DataFrame, a: str, b: str, setting: str) -> str:
    """Words for a narrower gap: levelling down unless some group's accuracy is detectably higher."""
    rows = pooled[(pooled["a"] == a) & (pooled["b"] == b) & (pooled["setting"] == setting)
                  & (pooled["metric"] == "accuracy") & (pooled["group"] != "all")]  # fmt: skip
    return {
        "raised": "",
        "levelled down": " by levelling down: no group's accuracy rises, some fall",
        "no gain": ", with no group's accuracy detectably higher",
    }[narrowing(list(rows["verdict"]))]


def _said(pooled: pd.DataFrame, a: str, b: str, setting: str, *, smaller: str, larger: str) -> str:
    """How ``a``'s accuracy gap compares with ``b``'s, in the verdict's words, with its interval."""
    row = _row(pooled, a, b, "gap_accuracy", setting)
    if row is None:
        return "was not measured"
    numbers = interval(row["value"], row["lo"], row["hi"])
    seeds = int(row.get("n_seeds", 1))
    if seeds < MIN_SEEDS or row["verdict"] == INCONCLUSIVE:
        return f"is inconclusive with {seeds} seed(s) ({numbers}; five are needed for a verdict)"
    if row["verdict"] == "better":
        return f"{smaller}{_how_narrowed(pooled, a, b, setting)}: {numbers}"
    if row["verdict"] == "worse":
        return f"{larger}: {numbers}"
    return f"shows no detectable difference: {numbers}"


def findings(pooled: pd.DataFrame, *, modalities, seeds: int, mode: str) -> str:
    """*What we found*, per modality, from the pooled comparisons (``value [lo, hi]`` of gaps)."""
    source = (
        f"Pooled over {seeds} seeds of the {mode}-mode sweep"
        if seeds > 1
        else f"This {mode}-mode run alone (no sweep kept for these parameters)"
    )
    lines = [
        f"{source}; a difference is a gap of the first arm minus the second (negative: the "
        "first is fairer), with its 95% interval. The review's claims are stated for "
        "foundation models pretrained on millions of images; ours pretrain a small encoder on "
        "a few thousand, so a negative result bounds what pretraining buys at this scale, not "
        "in general. The training-site pool holds the minority at its natural share, not at "
        "its share of the labelled set, so SSL against supervised also means more (unlabelled) "
        "minority images; the pool without the minority separates the two."
    ]
    probe, tune = arm("linear_probe", "same_site"), arm("fine_tune", "same_site")
    for modality in modalities:
        where = f"{modality}, test"
        lines.append(
            f"- **{modality}**: the SSL linear probe's accuracy gap against supervised training "
            + _said(pooled, probe, SUPERVISED, where, smaller="is smaller", larger="is larger")
            + "; fine-tuned, against supervised, it "
            + _said(pooled, tune, SUPERVISED, where, smaller="is smaller", larger="is larger")
            + "; fine-tuning against the probe "
            + _said(pooled, tune, probe, where, smaller="narrows the gap", larger="widens the gap")
            + "; a pool without the minority, against one with it, "
            + _said(pooled, arm("linear_probe", "no_minority"), probe, where, smaller="narrows the gap", larger="widens the gap")
            + "."
        )  # fmt: skip
    return "\n".join(lines)
