"""Chapter 2, how bias enters: sweeps of injected bias, the shortcut test, baseline tables.

Each experiment generates biased training data from a modality's causal model, trains through
the one loop and evaluates on the balanced, unbiased test set (``Experiment.evaluate``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd
from scikit_posthocs import posthoc_nemenyi_friedman
from scipy.stats import friedmanchisquare
from tqdm.auto import tqdm

from fairkit import methods, seeds, tuning
from fairkit.data import synth
from fairkit.experiment import Experiment
from fairkit.fairness import Report
from fairkit.methods import BASELINES, Threshold
from fairkit.training import predict
from fairkit.tuning import Tuned
from fairkit.verdicts import higher_is_better, interval, paired_table

PER_GROUP = ("recall", "fpr", "auroc")
GAPS = ("equalized_odds", "equal_opportunity", "gap_auroc")


def _tidy(report: Report, attribute: str, **labels) -> tuple[pd.DataFrame, pd.DataFrame]:
    groups = report.by_group[
        (report.by_group["attribute"] == attribute) & report.by_group["metric"].isin(PER_GROUP)
    ]
    gaps = report.gaps[(report.gaps["attribute"] == attribute) & report.gaps["metric"].isin(GAPS)]
    return groups.assign(**labels), gaps.assign(**labels)


def sweep(experiment: Experiment, kind: str, strengths) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train ERM at each bias strength; per-group metrics and gaps (with 95% CIs) per strength."""
    task, groups, gaps = experiment.task, [], []
    for strength in tqdm(strengths, desc=f"{experiment.modality} {kind} sweep", leave=False):
        rep = experiment.report("erm", kind, strength)
        g, d = _tidy(
            rep, task.attribute, modality=experiment.modality, kind=kind, strength=strength
        )
        groups.append(g)
        gaps.append(d)
    return pd.concat(groups, ignore_index=True), pd.concat(gaps, ignore_index=True)


def amplification(experiment: Experiment, kind: str, strengths) -> pd.DataFrame:
    """Does the bias widen the gap? The strongest setting minus the weakest, paired.

    Every strength is tested on the same balanced, unbiased test patients, so the difference of
    the two reports is paired (``verdicts.paired_table``): per group AUROC and recall, and the
    AUROC and equalized-odds gaps. Rows in the form of ``verdicts.COMPARISON_KEYS``
    (comparison = ``kind``, setting = modality, a/b = the two strengths).
    """
    first, last = strengths[0], strengths[-1]
    reports = {s: experiment.report("erm", kind, s) for s in (first, last)}
    return paired_table(
        reports,
        [(last, first)],
        experiment.task.attribute,
        metrics=("auroc", "recall"),
        gap_metrics=("gap_auroc", "equalized_odds"),
        comparison=kind,
        setting=experiment.modality,
    )


def sweep_all(experiments, kind: str, strengths) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``sweep`` on several modalities, the tables stacked."""
    results = [sweep(e, kind, strengths) for e in experiments]
    return (
        pd.concat([g for g, _ in results], ignore_index=True),
        pd.concat([d for _, d in results], ignore_index=True),
    )


def shortcut_test(experiment: Experiment, strength: float) -> pd.DataFrame:
    """The shortcut test: how much AUROC a model owes to an artifact tied to the disease.

    Train with the tie; test on images with the same tie, then on their exact counterfactuals
    with the artifact removed.
    """
    task, s = experiment.task, experiment.settings
    erm = experiment.run("erm", "spurious", strength)
    bias = experiment.bias("spurious", strength)
    tied = synth.generate(
        experiment.modality,
        s.n_test,
        seed=seeds.stream(experiment.seed, "shortcut test"),
        image_size=s.image_size,
        **bias,
    )
    rows = []
    for name, test in (
        ("artifact tied to disease", tied),
        (
            "artifact removed (counterfactual)",
            synth.counterfactual(tied, {task.artifact: task.artifact_absent}),
        ),
    ):
        test_predictions = predict(erm.model, experiment.binary(test), device=experiment.device)
        rep = experiment.evaluate(replace(erm, test=test_predictions))
        auroc = rep.by_group[rep.by_group["metric"] == "auroc"]
        rows += [
            {
                "modality": experiment.modality,
                "strength": strength,
                "test": name,
                "group": r.group,
                "auroc": r.value,
                "lo": r.lo,
                "hi": r.hi,
            }
            for r in auroc.itertuples()
        ]
    return pd.DataFrame(rows)


def tune_baselines(experiment: Experiment, *, strength: float, names=BASELINES) -> dict[str, Tuned]:
    """Every baseline tuned alike on one under-represented cohort (``tuning.tune``)."""
    scenario = experiment.scenario("under", strength)
    return {
        name: tuning.tune(scenario, methods.get(name))
        for name in tqdm(names, desc=f"{experiment.modality} tuning", leave=False)
    }


def compare_baselines(
    experiment: Experiment, tuned: dict[str, Tuned], *, strength: float, rule: str
) -> tuple[pd.DataFrame, dict[str, Report]]:
    """Every tuned baseline at the candidate ``rule`` keeps: per-group and gap numbers (95% CI)."""
    task = experiment.task
    reports, rows = {}, []
    for method, found in tuned.items():
        rep = experiment.report(found.chosen[rule], "under", strength)
        reports[method] = rep
        for metric in ("worst_recall", "worst_auroc", "equal_opportunity", "equalized_odds"):
            value = rep.gaps[
                (rep.gaps["metric"] == metric) & (rep.gaps["attribute"] == task.attribute)
            ].iloc[0]
            rows.append(
                {
                    "modality": experiment.modality,
                    "rule": rule,
                    "method": method,
                    "metric": metric,
                    "value": value["value"],
                    "lo": value["lo"],
                    "hi": value["hi"],
                }
            )
    return pd.DataFrame(rows), reports


def majority_costs(
    differences: pd.DataFrame, tuning_table: pd.DataFrame, *, minority: dict, bound: float = 0.05
) -> list[str]:
    """Sentences for each tuned baseline that lowers the majority's AUROC more than ``bound``.

    The majority is every group but ``minority[modality]``. ``differences`` from
    ``baseline_differences`` (one rule), ``tuning_table`` from
    ``tune_baselines``; each sentence gives the paired drop and the best overall validation
    AUROC any candidate of the method's grid reached beside ERM's, so a reader sees whether
    tuning could have helped.
    """
    best = tuning_table.groupby(["modality", "method"])["overall"].max()
    lines = []
    for row in differences[(differences["metric"] == "auroc")].itertuples():
        if row.group in ("all", minority[row.setting]) or row.value >= -bound:
            continue
        lines.append(
            f"{row.setting}: {row.a} lowers the majority's ({row.group}) AUROC by "
            f"{interval(-row.value, -row.hi, -row.lo)}; the best overall validation AUROC of "
            f"its grid is {best[row.setting, row.a]:.3f}, ERM's {best[row.setting, 'erm']:.3f}"
        )
    return lines


def rank_methods(
    baselines: pd.DataFrame, *, metric: str = "worst_auroc", leave_out=("threshold",)
) -> pd.DataFrame:
    """Each method's rank (1 = best) in every (rule, modality, seed) block of ``baselines``.

    Blocks are the cohorts a method is compared on (MEDFAIR's ranking over datasets and
    seeds); ties share their mean rank. ``leave_out``: methods whose ``metric`` equals another
    method's by construction (post-processing keeps its base's scores, hence its AUROC).
    """
    rows = baselines[(baselines["metric"] == metric) & ~baselines["method"].isin(leave_out)]
    blocks = [c for c in ("rule", "modality", "seed") if c in rows]
    best_first = not higher_is_better(metric)
    ranked = rows.assign(rank=rows.groupby(blocks)["value"].rank(ascending=best_first))
    return ranked[[*blocks, "method", "value", "rank"]]


@dataclass(frozen=True)
class RankTest:
    """Friedman's test over the complete blocks of one rule, and Nemenyi's pairwise p-values."""

    p_value: float
    mean_rank: pd.Series  # by method, 1 = best
    nemenyi: pd.DataFrame  # method x method p-values (scikit-posthocs)
    blocks: int  # the complete blocks (cohorts) the test used


def friedman_nemenyi(ranked: pd.DataFrame) -> RankTest:
    """Friedman's test of "all methods rank alike" over ``ranked``'s blocks, with Nemenyi's.

    ``ranked`` from ``rank_methods`` for one rule; a block missing a method is left out (the
    test needs complete blocks), and ``RankTest.blocks`` says how many remained.
    """
    blocks = [c for c in ("modality", "seed") if c in ranked]
    wide = ranked.pivot_table(index=blocks, columns="method", values="rank").dropna()
    if len(wide) < 2 or wide.shape[1] < 3:
        raise ValueError(
            f"a Friedman test needs >= 2 complete blocks and >= 3 methods; got {wide.shape}"
        )
    p_value = float(friedmanchisquare(*(wide[c] for c in wide)).pvalue)
    nemenyi = posthoc_nemenyi_friedman(wide.to_numpy())
    nemenyi = nemenyi.set_axis(wide.columns, axis=0).set_axis(wide.columns, axis=1)
    return RankTest(p_value, wide.mean(), nemenyi, len(wide))


CROSSED_WITH = {"skin": "sex", "cxr": "age_group", "mri": "sex"}  # intersected with the audit


def _rows(report: Report, attribute: str, metrics, **labels) -> pd.DataFrame:
    table = report.by_group
    rows = table[(table["attribute"] == attribute) & table["metric"].isin(metrics)]
    return rows.assign(**labels)


def calibration(experiment: Experiment, reports: dict[str, Report]) -> pd.DataFrame:
    """Each method's expected calibration error per group (10 equal-width bins, 95% CI).

    A group whose scores are miscalibrated cannot read them as probabilities even where its
    AUROC is fine. ``reports`` by method, e.g. from ``compare_baselines``.
    """
    attribute = experiment.task.attribute
    return pd.concat(
        [
            _rows(rep, attribute, ("ece",), method=method, modality=experiment.modality)
            for method, rep in reports.items()
        ],
        ignore_index=True,
    )


def intersections(experiment: Experiment, *, strength: float) -> pd.DataFrame:
    """ERM's AUROC and recall per intersection of the audited attribute and one more.

    The second attribute is ``CROSSED_WITH[modality]``; a gap hidden inside a group (e.g. dark
    skin in women only) shows here and not in the marginal groups.
    """
    second = CROSSED_WITH[experiment.modality]
    rep = experiment.evaluate(experiment.run("erm", "under", strength), also=(second,))
    crossed = f"{experiment.task.attribute} x {second}"  # the report's name for the pair
    return _rows(rep, crossed, ("auroc", "recall"), modality=experiment.modality)


def external_site(experiment: Experiment, *, strength: float) -> pd.DataFrame:
    """ERM's per-group AUROC and recall on the internal test set and on an external site.

    The external cohort is the same causal model under do(site = X) (another device and
    population mix), balanced like the test set; recall is at the internal validation
    threshold, as a deployed model would be used. Different patients: compare intervals.
    """
    erm = experiment.run("erm", "under", strength)
    external = predict(
        erm.model,
        experiment.scenario("under", strength).cohorts["external"],
        device=experiment.device,
    )
    return pd.concat(
        [
            _rows(
                experiment.evaluate(replace(erm, test=table)),
                experiment.task.attribute,
                ("auroc", "recall"),
                modality=experiment.modality,
                cohort=cohort,
            )
            for cohort, table in (("internal test", erm.test), ("external site", external))
        ],
        ignore_index=True,
    )


def threshold_transfer(
    experiment: Experiment, *, strength: float, threshold: Threshold
) -> pd.DataFrame:
    """Per-group TPR and FPR and the equalized-odds gap where thresholds were fitted and on test.

    ERM at one validation threshold against fairlearn's ThresholdOptimizer on its scores
    (``threshold``, tuned: its ``base`` is that ERM), which equalises TPR and FPR *on the
    validation set*. That set is biased like training, so the minority's rates there rest on
    few images (``val_positives``, ``val_images``); a constraint met on them need not hold on
    the balanced test set.
    """
    attribute = experiment.task.attribute
    val = experiment.scenario("under", strength).val
    counts = val.meta.assign(positive=val.labels == 1).groupby(val.meta[attribute].astype(str))
    rows = []
    for method, trained in (("erm", threshold.base), ("threshold", threshold)):
        predictions = experiment.run(trained, "under", strength)
        for split in ("validation", "test"):
            rep = experiment.evaluate(predictions, split=split)
            gap = rep.gaps[(rep.gaps["attribute"] == attribute)]
            rows += [
                _rows(rep, attribute, ("recall", "fpr"), method=method, split=split),
                gap[gap["metric"] == "equalized_odds"].assign(
                    group="all", method=method, split=split
                ),
            ]
    table = pd.concat(rows, ignore_index=True).assign(modality=experiment.modality)
    return table.assign(
        val_images=table["group"].map(counts.size()),
        val_positives=table["group"].map(counts["positive"].sum()),
    )


def baseline_differences(
    experiment: Experiment, reports: dict[str, Report], *, rule: str
) -> pd.DataFrame:
    """Each baseline minus ERM on the same test patients: recall, AUROC and the two gaps.

    Rows in the form of ``verdicts.COMPARISON_KEYS`` (comparison ``baseline, <rule>``, setting
    the modality, a the method, b ``erm``); ``reports`` from ``compare_baselines`` under
    ``rule``, by which ERM was chosen too.
    """
    return paired_table(
        reports,
        [(method, "erm") for method in reports if method != "erm"],
        experiment.task.attribute,
        metrics=("recall", "auroc"),
        gap_metrics=("equalized_odds", "equal_opportunity"),
        comparison=f"baseline, {tuning.RULE_NAMES[rule]}",
        setting=experiment.modality,
    )


REBALANCING = ("resample", "reweight", "groupdro")
"""Baselines that show each majority image less often than ERM does (draws or weight)."""


def longer_training(
    experiment: Experiment,
    tuned: dict[str, Tuned],
    *,
    strength: float,
    rule: str,
    factor: int = 2,
    names=REBALANCING,
) -> pd.DataFrame:
    """Each rebalancing baseline minus ERM when every model trains ``factor`` times longer.

    The candidates ``rule`` kept are trained again at ``factor`` x the loop's epochs on the same
    cohorts. A majority cost that shrinks here is the training length's (rebalancing shows the
    majority's images less often per epoch), not the method's. Rows as ``baseline_differences``,
    comparison ``baseline, <rule>, <epochs> epochs``.
    """
    if not (isinstance(factor, int) and factor > 1):
        raise ValueError(f"factor must be an integer above 1; got {factor!r}")
    epochs = experiment.settings.epochs * factor
    longer = replace(experiment, settings=replace(experiment.settings, epochs=epochs), _cache={})
    reports = {
        name: longer.report(tuned[name].chosen[rule], "under", strength) for name in ("erm", *names)
    }
    return paired_table(
        reports,
        [(name, "erm") for name in names],
        experiment.task.attribute,
        metrics=("recall", "auroc"),
        gap_metrics=("equalized_odds", "equal_opportunity"),
        comparison=f"baseline, {tuning.RULE_NAMES[rule]}, {epochs} epochs",
        setting=experiment.modality,
    )


@dataclass(frozen=True)
class Change:
    """A number at the first and at the last setting of a sweep, each with its 95% CI."""

    first: float
    first_lo: float
    first_hi: float
    last: float
    last_lo: float
    last_hi: float

    def __str__(self) -> str:
        return (
            f"{interval(self.first, self.first_lo, self.first_hi)} → "
            f"{interval(self.last, self.last_lo, self.last_hi)}"
        )

    @classmethod
    def of(cls, rows: pd.DataFrame) -> Change:
        """From the first and last of ``rows`` (columns value, lo, hi)."""
        a, b = rows.iloc[0], rows.iloc[-1]
        return cls(a.value, a.lo, a.hi, b.value, b.lo, b.hi)


@dataclass(frozen=True)
class BiasFindings:
    """Chapter 2's numbers on one modality, first and last setting of each sweep.

    Attributes:
        modality: the modality.
        minority: the under-represented group.
        shares: the minority's share of training images, first and last.
        minority_auroc: the minority's AUROC as its share shrinks.
        auroc_gap: the AUROC gap (max - min over groups) as it shrinks.
        eodds_gap: the equalized-odds gap as it shrinks.
        shortcut_auroc: mean AUROC with the artifact tied to disease, then removed by the exact
            counterfactual (no intervals: a mean over groups).
        ties: the artifact-disease strengths, first and last.
        tied_auroc: mean AUROC over groups at the first and last tie strength.
        tied_eodds_gap: the equalized-odds gap at the first and last tie strength.
    """

    modality: str
    minority: str
    shares: tuple[float, float]
    minority_auroc: Change
    auroc_gap: Change
    eodds_gap: Change
    shortcut_auroc: tuple[float, float]
    ties: tuple[float, float]
    tied_auroc: tuple[float, float]
    tied_eodds_gap: Change


def findings(
    modality: str,
    minority: str,
    *,
    under: tuple[pd.DataFrame, pd.DataFrame],
    spurious: tuple[pd.DataFrame, pd.DataFrame],
    shortcut: pd.DataFrame,
) -> BiasFindings:
    """Chapter 2's numbers on one modality, first and last sweep setting in the order run.

    ``under`` and ``spurious`` are the (per-group, gaps) tables of ``sweep_all``; ``shortcut``
    is ``shortcut_test``'s table.
    """

    def rows(table, **where):
        return table[(table[list(where)] == pd.Series(where)).all(axis=1)]

    (under_groups, under_gaps), (spurious_groups, spurious_gaps) = under, spurious
    auroc = rows(under_groups, modality=modality, metric="auroc", group=minority)
    drop = shortcut[shortcut["modality"] == modality].groupby("test", sort=False)["auroc"].mean()
    tied = (
        rows(spurious_groups, modality=modality, metric="auroc")
        .groupby("strength", sort=False)["value"]
        .mean()
    )
    return BiasFindings(
        modality=modality,
        minority=minority,
        shares=(auroc.strength.iloc[0], auroc.strength.iloc[-1]),
        minority_auroc=Change.of(auroc),
        auroc_gap=Change.of(rows(under_gaps, modality=modality, metric="gap_auroc")),
        eodds_gap=Change.of(rows(under_gaps, modality=modality, metric="equalized_odds")),
        shortcut_auroc=(drop.iloc[0], drop.iloc[-1]),
        ties=(tied.index[0], tied.index[-1]),
        tied_auroc=(tied.iloc[0], tied.iloc[-1]),
        tied_eodds_gap=Change.of(rows(spurious_gaps, modality=modality, metric="equalized_odds")),
    )
