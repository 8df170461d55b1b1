"""Can the testbed show the effects the claims are about? Its positive controls, per modality.

For each seed and modality (``fairkit.studies.testbed``): (a) the minority's and the majority's
AUROC loss when the minority is 10% of training instead of 50%, (b) how much of the minority's
loss the oracle's real images of the rare cells recover, (c) the group and finding judges'
balanced accuracy on real test images, (d) the counterfactual judges' hit rate on exact
counterfactuals, per direction. Pooled over seeds (t intervals; Fieller for the recovery),
each against its gate; the weakest margin is printed last. Writes the per-seed table beside
the printout when ``--out`` is given.
Usage: python benchmarks/testbed.py [--seeds 5] [--mode quick] [--modalities skin,cxr,mri]
       [--fairgen-size 32] [--out benchmarks/results/testbed.csv]
"""

import argparse
import time
from dataclasses import replace

import pandas as pd

from fairkit.config import settings
from fairkit.io import write_atomic
from fairkit.studies import testbed
from fairkit.verdicts import interval


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--mode", default="quick")
    parser.add_argument("--modalities", default="skin,cxr,mri")
    parser.add_argument("--fairgen-size", type=int, default=None, help="the judges' image side")
    parser.add_argument("--out", default=None, help="CSV of the per-seed controls")
    args = parser.parse_args()
    sizes = settings(args.mode)
    if args.fairgen_size is not None:
        sizes = replace(sizes, fairgen_size=args.fairgen_size)
    modalities = tuple(args.modalities.split(","))
    start = time.perf_counter()
    per_seed = []
    for seed in range(args.seeds):
        per_seed.append(testbed.controls(sizes, seed=seed, device="cpu", modalities=modalities))
        print(f"seed {seed} done ({time.perf_counter() - start:.0f} s)", flush=True)
    table = pd.concat(per_seed, ignore_index=True)
    if args.out:
        write_atomic(args.out, lambda path: table.to_csv(path, index=False))
    gates = testbed.gates(testbed.pooled(table))
    print(f"\n{args.seeds} seeds, {args.mode}, judges at {sizes.fairgen_size} px, "
          f"{time.perf_counter() - start:.0f} s")  # fmt: skip
    for _, r in gates.iterrows():
        print(f"{r.modality:5s} {r.control:55s} {interval(r.value, r.lo, r.hi)} "
              f"(gate {r.threshold:g}: {'passes' if r.passes else 'FAILS'}, margin {r.margin:+.3f})")  # fmt: skip
    weakest = gates.loc[gates["margin"].idxmin()]
    print(f"weakest margin: {weakest.modality} {weakest.control} {weakest.margin:+.3f} "
          f"({int(gates['passes'].sum())} of {len(gates)} controls pass)")  # fmt: skip


if __name__ == "__main__":
    main()
