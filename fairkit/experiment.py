"""The shared setup of a study: cohorts by modality and bias, splits, sizes, seed, device.

An ``Experiment`` fixes a modality, the mode's sizes, a seed and a device. A ``Scenario`` is one
bias setting of it (an under-represented group, a spurious artifact, or none): its biased
training and validation cohorts and the balanced, unbiased test set. Every method
(``fairkit.methods``) turns a scenario into predictions; the experiment trains each once,
remembers it, and evaluates it, always the same way, through ``fairness.report``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field, replace
from typing import Any

from fairkit import methods
from fairkit.config import Settings
from fairkit.data import Cohort, synth
from fairkit.data.bias import LabelNoise, Spurious, UnderRepresent
from fairkit.fairness import Report, choose_threshold, report
from fairkit.methods import Method, MethodPredictions
from fairkit.models.classifier import backbone
from fairkit.training import TrainConfig, predict

BIAS_KINDS = ("none", "under", "spurious", "label_noise")
SELECTION = ("overall", "worst_group")


@dataclass(frozen=True)
class Experiment:
    """What every run of a chapter shares: modality, sizes, model, seed, device.

    Attributes:
        modality: ``skin``, ``cxr`` or ``mri`` (``synth.BINARY_TASKS``).
        settings: the mode's sizes (``fairkit.config.settings(mode)``).
        seed: the seed of cohorts, models and bootstrap.
        device: where models train (``fairkit.config.resolve_device``).
        backbone: the classifier (default: the mode's).
        attribute: the audited attribute (default: the modality's).
        fixed_majority: an under-representation removes minority images instead of replacing
            them by majority ones (the majority group keeps half of ``n_train``).
        n_val: validation images (default a quarter of the training images, at least 64);
            larger when settings are chosen per group on validation data.
        selection: how a one-model method keeps its epoch on validation: the best ``overall``
            AUROC, or the best ``worst_group`` AUROC of the audited attribute (a chapter that
            compares with group-specific models, each kept at its own group's best epoch).
    """

    modality: str
    settings: Settings
    seed: int
    device: str
    backbone: str | None = None
    attribute: str | None = None
    fixed_majority: bool = False
    n_val: int | None = None
    selection: str = "overall"
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        if self.selection not in SELECTION:
            raise ValueError(f"selection must be one of {SELECTION}; got {self.selection!r}")

    @property
    def task(self) -> synth.BinaryTask:
        """The modality's binary task and audited attribute (``attribute`` overrides it)."""
        task = synth.BINARY_TASKS[self.modality]
        return task if self.attribute is None else replace(task, attribute=self.attribute)

    def config(self, **changes) -> TrainConfig:
        """The training config of this experiment, with ``changes``."""
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

    def bias(self, kind: str, strength: float) -> dict:
        """An under-representation of the minority, a spurious artifact or label noise, as kwargs.

        ``kind="none"`` keeps the causal model's own composition; ``label_noise`` replaces the
        diagnosis of a ``strength`` fraction of the minority's training and validation images
        by another at random (a flip within the positive or negative class changes nothing in
        the binary task).
        """
        task = self.task
        if kind == "none":
            return {}
        if kind == "under":
            return {"under": UnderRepresent(task.attribute, task.minority, strength)}
        if kind == "label_noise":
            return {"label_noise": LabelNoise(task.attribute, {task.minority: strength})}
        if kind == "spurious":
            return {
                "spurious": Spurious(task.artifact, task.positive, strength, task.artifact_value)
            }
        raise ValueError(f"kind must be one of {BIAS_KINDS}; got {kind!r}")

    def splits(self, **bias) -> dict[str, Cohort]:
        """Biased train/val, balanced unbiased test and external cohorts, as the binary task."""
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
            n_val=self.n_val or max(n_train // 4, 64),
            n_test=s.n_test,
            **bias,
        )
        return {k: self.binary(c) for k, c in cohorts.items()}

    def scenario(self, kind: str = "none", strength: float = 0.0) -> Scenario:
        """One bias setting of this experiment."""
        self.bias(kind, strength)  # refuses an unknown kind before anything is generated
        return Scenario(self, kind, float(strength))

    def run(
        self, method: str | Method, kind: str = "none", strength: float = 0.0
    ) -> MethodPredictions:
        """Predictions of ``method`` (a registered name or a method) on one bias setting.

        Each (method, setting) is trained once and remembered; a method whose learning rate is
        None (the loop's) is the same setting as that method at the loop's rate, set.
        """
        method = methods.get(method) if isinstance(method, str) else method
        scenario = self.scenario(kind, strength)
        same = method
        if getattr(method, "lr", 0.0) is None:
            same = replace(method, lr=scenario.config().lr)
        return scenario.remember(("predictions", same), lambda: method(scenario))

    def evaluate(
        self, predictions: MethodPredictions, *, split: str = "test", also: tuple[str, ...] = ()
    ) -> Report:
        """The fairness report on the audited attribute, at a threshold chosen on validation.

        The validation rows are weighed to the test set's mix of the audited groups (balanced
        under an under-representation), so the threshold suits the groups the test will meet.

        Decisions that a method made itself (a ``decision`` column) are used as they are.
        ``split="validation"`` scores the data the thresholds were chosen on; ``also`` adds
        attributes, reported alone and crossed with the audited one (intersections).
        """
        if split not in ("test", "validation"):
            raise ValueError(f"split must be 'test' or 'validation'; got {split!r}")
        if (
            split == "validation"
            and "decision" in predictions.test
            and ("decision" not in predictions.val)
        ):
            raise ValueError(
                f"{predictions.method} decides on test data only; its validation decisions "
                "would be made at one global threshold instead"
            )
        positive, attribute = self.task.names[1], self.task.attribute
        # The operating point is chosen on validation weighed to the test set's group mix.
        mix = (
            attribute,
            predictions.test[attribute].astype(str).value_counts(normalize=True).to_dict(),
        )
        return report(
            predictions.test if split == "test" else predictions.val,
            groups=[attribute, *also],
            positive=positive,
            thresholds=choose_threshold(predictions.val, positive=positive, mix=mix),
            n_boot=self.settings.n_boot,
            seed=self.seed,
        )

    def report(self, method: str | Method, kind: str = "none", strength: float = 0.0) -> Report:
        """``evaluate(run(method, kind, strength))``."""
        return self.evaluate(self.run(method, kind, strength))

    def remember(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """``compute()``'s value, computed once per key for the life of the experiment."""
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]


@dataclass(frozen=True)
class Scenario:
    """One bias setting of an experiment: what a method is given to train and predict."""

    experiment: Experiment
    kind: str
    strength: float

    @property
    def cohorts(self) -> dict[str, Cohort]:
        """Train, validation, test (and external) cohorts, generated once."""
        e = self.experiment
        return self.remember(("cohorts",), lambda: e.splits(**e.bias(self.kind, self.strength)))

    @property
    def train(self) -> Cohort:
        """The biased training cohort."""
        return self.cohorts["train"]

    @property
    def val(self) -> Cohort:
        """The validation cohort (biased like the training cohort)."""
        return self.cohorts["val"]

    @property
    def test(self) -> Cohort:
        """The balanced, unbiased test cohort."""
        return self.cohorts["test"]

    @property
    def attribute(self) -> str:
        """The audited attribute, whose groups methods balance or model separately."""
        return self.experiment.task.attribute

    @property
    def positive(self) -> str:
        """The positive class name."""
        return self.experiment.task.names[1]

    def config(self, **changes) -> TrainConfig:
        """The experiment's training config, with ``changes``."""
        return self.experiment.config(**changes)

    def make_model(self, n_classes: int = 2):
        """A fresh classifier of the experiment's backbone."""
        return self.experiment.make_model(n_classes)

    def predictions(self, method: str | Method) -> MethodPredictions:
        """Another method's predictions on this scenario (trained once by the experiment)."""
        return self.experiment.run(method, self.kind, self.strength)

    def reports(
        self, predictions: dict[str, MethodPredictions], *, split: str
    ) -> dict[str, Report]:
        """Each method's report on the balanced test set or on the external site, all paired.

        On the external site every model predicts anew, at the threshold chosen on validation;
        a method that makes its own decisions (post-processing) cannot, and is refused there.
        """
        e = self.experiment
        if split == "test":
            return {n: e.evaluate(p) for n, p in predictions.items()}
        if split != "external":
            raise ValueError(f"split must be 'test' or 'external'; got {split!r}")
        own = [n for n, p in predictions.items() if "decision" in p.test]
        if own:
            raise ValueError(f"{own} decide on the test set only; they have no external result")
        modelless = [n for n, p in predictions.items() if p.model is None]
        if modelless:
            raise ValueError(f"{modelless} keep no single model to predict the external site with")
        external = self.cohorts["external"]
        return {
            n: e.evaluate(replace(p, test=predict(p.model, external, device=e.device)))
            for n, p in predictions.items()
        }

    def remember(self, key: tuple, compute: Callable[[], Any]) -> Any:
        """``compute()``'s value, once per key and scenario."""
        return self.experiment.remember((self.kind, self.strength, *key), compute)
