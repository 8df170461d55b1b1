"""Where can chapter 3 see SPARE's effect? Its positive control at each share of dark skin.

Chapter 3's premise control (``studies.spare.premise_control``): ERM trained with dark skin at
a share of the training set (the total fixed) minus ERM trained at an equal share, each tuned
by the chapter's rule, on the same test patients. Per seed and share, then pooled over seeds
(mean dark-skin F1 difference, seed-level t interval) against the gate the claims read: the
interval wholly below minus the smallest effect of interest. Were the knob to be calibrated,
the chapter's ``dark_fraction`` would be the largest share that passes, chosen on this control
alone, never on SPARE's result. Unlike a chapter's run, the script does not set the global
torch seed, so its numbers at the chapter's share differ from the chapter's sweep.
Usage: python benchmarks/spare_premise.py [--seeds 5] [--mode quick] [--fractions 0.05,0.1,0.2]
       [--out benchmarks/results/spare_premise.csv]
"""

import argparse
import time

import pandas as pd

from fairkit.claims import METRIC_SESOI
from fairkit.config import settings
from fairkit.experiment import Experiment
from fairkit.io import write_atomic
from fairkit.studies import spare
from fairkit.verdicts import interval, t_interval


def premise(fraction: float, sizes, seed: int) -> pd.DataFrame:
    """The premise control's rows at one dark-skin share and seed."""
    experiment = Experiment(
        "skin",
        sizes,
        seed,
        "cpu",
        attribute="skin_group",
        n_val=sizes.n_test,
        selection=spare.RULE,
    )
    table = spare.premise_control(experiment.scenario("under", fraction))
    return table.assign(dark_fraction=fraction, seed=seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--mode", default="quick")
    parser.add_argument("--fractions", default="0.05,0.1,0.2")
    parser.add_argument("--out", default=None, help="CSV of the per-seed control rows")
    args = parser.parse_args()
    sizes = settings(args.mode)
    fractions = [float(f) for f in args.fractions.split(",")]
    start = time.perf_counter()
    rows = []
    for seed in range(args.seeds):
        for fraction in fractions:
            rows.append(premise(fraction, sizes, seed))
        print(f"seed {seed} done ({time.perf_counter() - start:.0f} s)", flush=True)
    table = pd.concat(rows, ignore_index=True)
    if args.out:
        write_atomic(args.out, lambda path: table.to_csv(path, index=False))
    print(f"\n{args.seeds} seeds, {args.mode} mode, {time.perf_counter() - start:.0f} s")
    print(f"ERM at the share minus ERM at an equal share; gate: interval below {-METRIC_SESOI}")
    for fraction in fractions:
        for group in ("dark", "light"):
            at = table[(table["dark_fraction"] == fraction) & (table["group"] == group)]
            value, lo, hi = t_interval(at[at["metric"] == "f1"]["value"])
            verdict = ("  passes" if hi < -METRIC_SESOI else "  fails") if group == "dark" else ""
            print(f"dark share {fraction:.2f}  {group:5s} F1 {interval(value, lo, hi)}{verdict}")


if __name__ == "__main__":
    main()
