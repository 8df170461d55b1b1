"""How bias enters: sweeps of injected bias strength, the shortcut test, baseline tables.

Each experiment generates biased training data from a modality's causal model, trains through
the one loop and evaluates on the balanced, unbiased test set with ``fairness.report``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pandas as pd
from tqdm.auto import tqdm

from fairkit.data import Cohort, synth
from fairkit.data.bias import Spurious, UnderRepresent
from fairkit.fairness import Report, with_intervals
from fairkit.mitigation import baselines
from fairkit.models.classifier import backbone
from fairkit.config import Settings
from fairkit.train import TrainConfig, predict

PER_GROUP = ("recall", "fpr", "auroc")
GAPS = ("equalized_odds", "equal_opportunity", "gap_auroc")


@dataclass(frozen=True)
class Experiment:
    """What every experiment of the chapter shares: sizes, model, seed, device."""

    modality: str
    settings: Settings
    seed: int
    device: str
    backbone: str | None = None
    attribute: str | None = None
    fixed_majority: bool = False
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def task(self) -> synth.BinaryTask:
        """The modality's binary task and audited attribute (``attribute`` overrides it)."""
        task = synth.BINARY_TASKS[self.modality]
        return task if self.attribute is None else replace(task, attribute=self.attribute)

    def config(self, **changes) -> TrainConfig:
        """The training config of this experiment."""
        base = TrainConfig(
            epochs=self.settings.epochs,
            batch_size=self.settings.batch_size,
            seed=self.seed,
            device=self.device,
            progress=False,
        )
        return replace(base, **changes)

    def make_model(self, n_classes: int = 2):
        """A fresh classifier for this modality (the mode's backbone unless ``backbone``)."""
        name = self.backbone or self.settings.backbone
        return backbone(
            name,
            in_channels=3 if self.modality == "skin" else 1,
            n_classes=n_classes,
            image_size=self.settings.image_size,
            width=self.settings.width if name == "small_cnn" else self.settings.backbone_width,
            seed=self.seed,
        )

    def binary(self, cohort: Cohort) -> Cohort:
        """The cohort relabelled for the binary task."""
        return cohort.binarize(list(self.task.positive), names=self.task.names)

    def splits(self, **bias) -> dict[str, Cohort]:
        """Biased train/val, balanced unbiased test and external cohorts, as the binary task.

        With ``fixed_majority``, an under-representation keeps the majority group at half of
        ``n_train`` images and removes minority images (the training set shrinks with them),
        instead of replacing minority images by majority ones at a fixed total.
        """
        s = self.settings
        n_train = s.n_train
        under = bias.get("under")
        if self.fixed_majority and under is not None:
            n_train = round(s.n_train * 0.5 / (1 - under.fraction))
        cohorts = synth.make_splits(
            self.modality,
            seed=self.seed,
            image_size=s.image_size,
            n_train=n_train,
            n_val=max(n_train // 4, 64),
            n_test=s.n_test,
            **bias,
        )
        return {k: self.binary(c) for k, c in cohorts.items()}

    def bias(self, kind: str, strength: float) -> dict:
        """An under-representation of the minority group or a spurious artifact, as kwargs.

        ``kind="none"`` keeps the causal model's own composition.
        """
        task = self.task
        if kind == "none":
            return {}
        if kind == "under":
            return {"under": UnderRepresent(task.attribute, task.minority, strength)}
        if kind == "spurious":
            return {
                "spurious": Spurious(task.artifact, task.positive, strength, task.artifact_value)
            }
        raise ValueError(f"kind must be 'under', 'spurious' or 'none'; got {kind!r}")

    def cohorts(self, kind: str, strength: float) -> dict[str, Cohort]:
        """The splits of one bias setting, generated once and remembered."""
        if (kind, strength) not in self._cache:
            self._cache[(kind, strength)] = self.splits(**self.bias(kind, strength))
        return self._cache[(kind, strength)]

    def run(self, method: str, kind: str, strength: float) -> baselines.MethodPredictions:
        """Predictions of ``method`` at one bias setting, trained once and remembered.

        Threshold post-processing reuses the ERM model of the same setting.
        """
        key = (method, kind, strength)
        if key in self._cache:
            return self._cache[key]
        if method == "threshold":
            erm = self.run("erm", kind, strength)
            out = baselines.postprocess(
                erm, attribute=self.task.attribute, positive=self.task.names[1], seed=self.seed
            )
        else:
            splits = self.cohorts(kind, strength)
            out = baselines.run_method(
                method,
                make_model=self.make_model,
                train=splits["train"],
                val=splits["val"],
                test=splits["test"],
                attribute=self.task.attribute,
                config=self.config(),
            )
        self._cache[key] = out
        return out

    def evaluate(self, predictions: baselines.MethodPredictions) -> Report:
        """The fairness report of predictions on the audited attribute."""
        return baselines.evaluate(
            predictions,
            groups=[self.task.attribute],
            positive=self.task.names[1],
            n_boot=self.settings.n_boot,
            seed=self.seed,
        )


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
        rep = experiment.evaluate(experiment.run("erm", kind, strength))
        g, d = _tidy(
            rep, task.attribute, modality=experiment.modality, kind=kind, strength=strength
        )
        groups.append(g)
        gaps.append(d)
    return pd.concat(groups, ignore_index=True), pd.concat(gaps, ignore_index=True)


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
        seed=experiment.seed * 10 + 5,
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
        rep = experiment.evaluate(baselines.MethodPredictions("erm", erm.val, test_predictions))
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


def compare_baselines(
    experiment: Experiment, *, strength: float, methods=baselines.METHODS
) -> tuple[pd.DataFrame, dict[str, Report]]:
    """Every baseline on one under-represented cohort: a table of per-group and gap numbers."""
    task = experiment.task
    reports, rows = {}, []
    for method in tqdm(methods, desc=f"{experiment.modality} baselines", leave=False):
        rep = experiment.evaluate(experiment.run(method, "under", strength))
        reports[method] = rep
        for metric in ("worst_recall", "worst_auroc", "equal_opportunity", "equalized_odds"):
            value = rep.gaps[
                (rep.gaps["metric"] == metric) & (rep.gaps["attribute"] == task.attribute)
            ].iloc[0]
            rows.append(
                {
                    "modality": experiment.modality,
                    "method": method,
                    "metric": metric,
                    "value": value["value"],
                    "lo": value["lo"],
                    "hi": value["hi"],
                }
            )
    return pd.DataFrame(rows), reports


def findings(
    modality: str,
    minority: str,
    *,
    under: tuple[pd.DataFrame, pd.DataFrame],
    spurious: tuple[pd.DataFrame, pd.DataFrame],
    shortcut: pd.DataFrame,
) -> list[str]:
    """Chapter 2's verdict on one modality as markdown bullets, first and last sweep setting.

    Settings are taken in the order the sweeps ran. ``under`` and ``spurious`` are the (per-group, gaps) tables of ``sweep_all``; ``shortcut``
    is ``shortcut_test``'s table.
    """

    def ends(table, **where):
        rows = table[(table[list(where)] == pd.Series(where)).all(axis=1)]
        return rows.iloc[[0, -1]]

    (under_groups, under_gaps), (spurious_groups, spurious_gaps) = under, spurious
    auroc = ends(under_groups, modality=modality, metric="auroc", group=minority)
    gap = ends(under_gaps, modality=modality, metric="gap_auroc")
    eodds = ends(under_gaps, modality=modality, metric="equalized_odds")
    drop = shortcut[shortcut["modality"] == modality].groupby("test", sort=False)["auroc"].mean()
    tied = (
        spurious_groups[
            (spurious_groups["modality"] == modality) & (spurious_groups["metric"] == "auroc")
        ]
        .groupby("strength", sort=False)["value"]
        .mean()
    )
    tied_eodds = ends(spurious_gaps, modality=modality, metric="equalized_odds")
    shares = f"{auroc.strength.iloc[0]:.0%} → {auroc.strength.iloc[1]:.0%}"
    return [
        f"- **{modality}** (minority share {shares}): {minority} AUROC "
        + " → ".join(f"**{v}**" for v in with_intervals(auroc))
        + "; AUROC gap "
        + " → ".join(with_intervals(gap))
        + "; equalized-odds gap "
        + " → ".join(with_intervals(eodds))
        + f". Removing the artifact moves mean AUROC from {drop.iloc[0]:.3f} to {drop.iloc[1]:.3f}.",
        f"  Artifact tie {tied.index[0]:g} → {tied.index[-1]:g}: mean AUROC over groups "
        f"{tied.iloc[0]:.3f} → {tied.iloc[-1]:.3f}, equalized-odds gap "
        + " → ".join(with_intervals(tied_eodds))
        + ".",
    ]
