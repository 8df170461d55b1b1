"""Self-supervised pretraining, then adaptation: a linear probe or full fine-tuning.

The fair-foundation-model review (Queiroz et al. 2025) argues that self-supervised pretraining on
unlabelled images tends to be fairer than supervised training, and that fine-tuning is the
lever that aligns a pretrained model with its target. This method pretrains the experiment's
backbone with SimCLR (``fairkit.training.contrastive``) on an unlabelled pool drawn from the
causal model (the training sites, the same sites without the minority, or another site),
then trains on the scenario's labelled images either the head alone (``linear_probe``: the
encoder frozen) or the whole network (``fine_tune``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from torch import nn

from fairkit import seeds
from fairkit.data import synth
from fairkit.data.bias import UnderRepresent
from fairkit.methods.erm import ERM, LEARNING_RATES
from fairkit.models.classifier import Frozen, encoder_and_head

if TYPE_CHECKING:
    from fairkit.data import Cohort
    from fairkit.experiment import Experiment, Scenario

POOLS = ("same_site", "no_minority", "other_site")
ADAPTATIONS = ("linear_probe", "fine_tune")
OTHER_SITE = "X"  # the causal model's shifted site, also the external test site


def unlabelled_pool(experiment: Experiment, pool: str, *, n: int) -> Cohort:
    """``n`` images for pretraining, drawn from the causal model on their own seed stream.

    ``same_site``: the training sites at their natural group mix; ``no_minority``: the same
    with the audited minority removed; ``other_site``: the shifted site.
    """
    task = experiment.task
    draws = {
        "same_site": {},
        "no_minority": {"under": UnderRepresent(task.attribute, task.minority, 0.0)},
        "other_site": {"do": {"site": OTHER_SITE}},
    }
    if pool not in draws:
        raise ValueError(f"pool must be one of {POOLS}; got {pool!r}")
    return synth.generate(
        experiment.modality,
        n,
        seed=seeds.stream(experiment.seed, "pretraining pool", pool),
        image_size=experiment.settings.image_size,
        **draws[pool],
    )


def pretrained_encoder(experiment: Experiment, pool: str, *, checkpoint_dir=None) -> dict:
    """The weights of the backbone's encoder after SimCLR on ``pool`` (once per experiment)."""
    from fairkit.training.contrastive import ContrastiveConfig, pretrain

    def compute() -> dict:
        s = experiment.settings
        encoder, head = encoder_and_head(experiment.make_model())
        config = ContrastiveConfig(
            steps=s.ssl_steps,
            batch_size=s.ssl_batch,
            warmup_steps=max(1, s.ssl_steps // 10),
            seed=experiment.seed,
            device=experiment.device,
            progress=False,
            checkpoint_dir=(
                None
                if checkpoint_dir is None
                else str(Path(checkpoint_dir) / experiment.modality / pool)
            ),
        )
        images = unlabelled_pool(experiment, pool, n=s.ssl_pool)
        encoder, _ = pretrain(encoder, images, features=head.in_features, config=config)
        return {k: v.detach().clone() for k, v in encoder.state_dict().items()}

    return experiment.remember(("pretrained encoder", pool), compute)


@dataclass(frozen=True)
class Pretrained(ERM):
    """ERM's loop started from a SimCLR-pretrained encoder: all of it trained, or the head only.

    ``lr`` (ERM's field) None keeps the experiment's learning rate; a linear probe usually
    wants a larger one, so a study tunes each adaptation on its own.
    """

    name: str = "ssl"
    adaptation: str = "fine_tune"
    pool: str = "same_site"
    checkpoint_dir: str | None = None  # pretraining checkpoints, in <modality>/<pool> below it

    def __post_init__(self):
        super().__post_init__()
        if self.adaptation not in ADAPTATIONS:
            raise ValueError(f"adaptation must be one of {ADAPTATIONS}; got {self.adaptation!r}")
        if self.pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}; got {self.pool!r}")

    def search(self) -> dict[str, tuple]:
        """The learning rate: ERM's grid to fine-tune, ten times larger for a head alone."""
        scale = 10 if self.adaptation == "linear_probe" else 1
        return {"lr": tuple(scale * lr for lr in LEARNING_RATES)}

    def initial_model(self, scenario: Scenario) -> nn.Module:
        """The backbone with the pretrained encoder; frozen under a linear probe."""
        weights = pretrained_encoder(
            scenario.experiment, self.pool, checkpoint_dir=self.checkpoint_dir
        )
        model = scenario.make_model()
        encoder, head = encoder_and_head(model)
        encoder.load_state_dict(weights)
        if self.adaptation == "fine_tune":
            return model
        return nn.Sequential(Frozen(encoder), head)
