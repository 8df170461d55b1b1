"""Augmentation: ERM on the real training images plus extra images of the rare cells.

The extra images are FairGen's (2026) synthetic ones (``fairkit.synthesis.synthesise``) or, as
its upper bound, an oracle's real images of the same cells; either is a saved Cohort folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fairkit.data import Cohort, concat
from fairkit.methods.erm import ERM

if TYPE_CHECKING:
    from fairkit.experiment import Scenario


@dataclass(frozen=True, kw_only=True)
class Augment(ERM):
    """ERM (same config, model and validation selection) on real plus extra training images.

    Attributes:
        name: the method's name in tables, e.g. ``"fairgen"`` or ``"oracle"`` for two folders.
        extra: the folder of a saved Cohort (``Cohort.save``) holding the extra images.
    """

    name: str = "augment"
    extra: str

    def training_cohort(self, scenario: Scenario) -> Cohort:
        """The scenario's training cohort followed by the extra images (``augmented``)."""
        return augmented(scenario.train, Cohort.load(self.extra), attribute=scenario.attribute)


def augmented(train: Cohort, extra: Cohort, *, attribute: str) -> Cohort:
    """``train`` followed by ``extra``, with the metadata of ``train``'s columns.

    The real rows keep every column as it was; the extra rows keep their values of those
    columns and are NaN where they have none (a generated image has no causal noise, site or
    age). Columns only the extra cohort has (e.g. ``finding``, a copy of the label) are
    dropped, but for ``synthetic``, which marks each row: False for the real images, the
    extra's own flag (False where it has none: an oracle's real images) for the others.

    Args:
        train: the real training cohort.
        extra: images of the same modality, classes and shape, whose metadata has ``label``
            and ``attribute`` (with values seen in ``train``).
        attribute: the audited attribute, which the group-aware losses and samplers read.

    Returns:
        One cohort of ``len(train) + len(extra)`` images, the real ones first.
    """
    _check_compatible(train, extra, attribute=attribute)
    columns = [*train.meta.columns.drop("synthetic", errors="ignore"), "synthetic"]
    real = train.meta.assign(synthetic=train.meta.get("synthetic", False))
    more = extra.meta.assign(synthetic=extra.meta.get("synthetic", False))
    return concat(
        [
            Cohort(train.images, real[columns], train.modality, train.classes),
            Cohort(extra.images, more.reindex(columns=columns), extra.modality, extra.classes),
        ]
    )


def _check_compatible(train: Cohort, extra: Cohort, *, attribute: str) -> None:
    """Refuse extra images that could not join the training set, naming what differs."""
    for what, expected, found in (
        ("modality", train.modality, extra.modality),
        ("classes", train.classes, extra.classes),
        ("image shape (C, H, W)", train.images.shape[1:], extra.images.shape[1:]),
    ):
        if expected != found:
            raise ValueError(
                f"the extra cohort's {what} must be the training set's {expected}; got {found}"
            )
    if attribute not in extra.meta:
        raise KeyError(
            f"the extra cohort's metadata needs the audited attribute {attribute!r}; "
            f"it has {list(extra.meta.columns)}"
        )
    unseen = sorted(set(extra.meta[attribute].astype(str)) - set(train.meta[attribute].astype(str)))
    if unseen:
        raise ValueError(
            f"the extra cohort's {attribute} values {unseen} are not in the training set's "
            f"{sorted(train.meta[attribute].astype(str).unique())}"
        )
