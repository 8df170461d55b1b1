"""Can the testbed show a fairness effect? The positive control of under-representation.

Per modality, ERM is trained with the minority at 10% and at 50% of training (chapter 2's
design: the majority keeps its images, so the 50% arm is the 10% arm plus real minority images,
the oracle of this control). The minority's AUROC loss (10% - 50%, paired on one test set, then
pooled over seeds with a t interval) must be at least ``--margin`` and larger than the
majority's. The weakest margin over modalities is printed last: the number a calibration of
the causal models has to move.
Usage: python benchmarks/testbed.py [--seeds 5] [--mode quick] [--modalities skin,cxr,mri]
"""

import argparse
import time

from fairkit.config import settings
from fairkit.experiment import Experiment
from fairkit.verdicts import interval, paired_difference, t_interval


def losses(modality: str, seed: int, mode: str) -> dict[str, float]:
    """One seed's AUROC loss of each group (10% minus 50%) and the minority's excess."""
    experiment = Experiment(modality, settings(mode), seed, "cpu", fixed_majority=True)
    task = experiment.task
    rare, balanced = (experiment.report("erm", "under", f) for f in (0.1, 0.5))
    majority = next(g for g in set(rare.by_group["group"]) if g != task.minority)
    loss = {
        group: -paired_difference(rare, balanced, "auroc", attribute=task.attribute, group=g).value
        for group, g in (("minority", task.minority), ("majority", majority))
    }
    return {**loss, "excess": loss["minority"] - loss["majority"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--mode", default="quick")
    parser.add_argument("--modalities", default="skin,cxr,mri")
    parser.add_argument("--margin", type=float, default=0.05)
    args = parser.parse_args()
    margins = {}
    for modality in args.modalities.split(","):
        start = time.perf_counter()
        rows = [losses(modality, seed, args.mode) for seed in range(args.seeds)]
        pooled = {k: t_interval([r[k] for r in rows]) for k in rows[0]}
        seconds = time.perf_counter() - start
        print(f"{modality} ({args.seeds} seeds, {args.mode}, {seconds:.0f} s):")
        for name, (mean, lo, hi) in pooled.items():
            print(f"  AUROC loss at 10% vs 50%, {name:8s} {interval(mean, lo, hi)}")
        # The control passes when the minority's loss is >= margin and exceeds the majority's,
        # both with intervals: its margin is the smaller of the two lower bounds' distances.
        margins[modality] = min(pooled["minority"][1] - args.margin, pooled["excess"][1])
    weakest = min(margins, key=margins.get)
    verdict = "passes" if margins[weakest] > 0 else "fails"
    print(
        f"weakest margin: {weakest} {margins[weakest]:+.3f} (control {verdict}; margins "
        + ", ".join(f"{m} {v:+.3f}" for m, v in margins.items())
        + ")"
    )


if __name__ == "__main__":
    main()
