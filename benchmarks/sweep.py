"""A sweep of smoke runs, one after another against the same runs through a local Dask cluster.

Both execute the quick-start chapter in smoke mode over the same seeds with the same runner
(papermill, a fresh kernel per run); serially each run may use every core, on the cluster each
of the ``--workers`` workers runs one chapter at a time with the cores divided between them.
Usage: python benchmarks/sweep.py [--runs 8] [--workers 2] [--notebook notebooks/00_quickstart.py]
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

from fairkit import runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--notebook", default="notebooks/00_quickstart.py")
    args = parser.parse_args()
    grid = runs.parse_grid(["mode=smoke", "seed=" + ",".join(map(str, range(args.runs)))])
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        for point in grid:
            runs.run_notebook(args.notebook, point, runs_root=Path(tmp, "serial"), from_cli=True)
        serial = time.perf_counter() - started
        started = time.perf_counter()
        table = runs.sweep(
            args.notebook, grid, runs_root=Path(tmp, "dask"), workers=args.workers, progress=False
        )
        parallel = time.perf_counter() - started
        assert (table["status"] == "complete").all(), table
    print(f"{args.runs} smoke runs of {Path(args.notebook).stem} on {os.cpu_count()} cores")
    print(f"serial (runner, one at a time):  {serial:7.1f} s")
    print(f"Dask LocalCluster, {args.workers} workers:   {parallel:7.1f} s")
    print(f"speed-up: {serial / parallel:.2f}x")


if __name__ == "__main__":
    main()
