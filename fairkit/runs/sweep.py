"""Sweeps: one chapter over a grid of parameters, each point a papermill run, on Dask distributed.

``python -m fairkit sweep notebooks/03_spare.py -g seed=0,1,2,3,4 -g mode=quick`` checks every
point of the grid before any kernel starts, runs the points on a ``LocalCluster`` (or on the
cluster at ``--scheduler``), reports each failure without stopping the others, and returns one
row per point. ``collect`` later joins a table of every *complete* run folder into one frame.

On a Slurm cluster, start the workers with dask-jobqueue and pass the scheduler's address::

    from dask_jobqueue import SLURMCluster
    cluster = SLURMCluster(cores=8, memory="32GB", processes=1, job_extra_directives=["--gres=gpu:1"])
    cluster.scale(jobs=10)
    print(cluster.scheduler_address)   # python -m fairkit sweep ... --scheduler <address>
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from fairkit.config import swept_mode
from fairkit.runs.kernel import REPO_ROOT, RESULTS, SECTION_SWITCH, pooling_key, replaced
from fairkit.runs.parameters import ParameterError, notebook_parameters, resolve_parameters
from fairkit.runs.provenance import check_poolable
from fairkit.runs.runner import RunFailed, run_notebook

KEPT_IN_RESULTS = (".csv", ".json")  # what ``tables_only`` keeps of a run folder


def _top_level_split(text: str) -> list[str]:
    """``text`` split at the commas outside brackets and quotes: ``[1, 2],'a,b'`` is 2 values."""
    parts, depth, quote, start = [], 0, None, 0
    for k, char in enumerate(text):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:k])
            start = k + 1
    return [*parts, text[start:]]


def parse_grid(specs: Sequence[str]) -> list[dict[str, str]]:
    """``["seed=0,1", "dark_fraction=0.1,0.3"]`` -> the four combinations, values as typed.

    A comma inside brackets or quotes belongs to one value: ``"backbones=['a', 'b']"`` is one
    value. Values stay text here; the runner checks each against the notebook default's type.
    """
    if not specs:
        raise ParameterError("no grid: give at least one -g NAME=V1,V2")
    axes: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        name = name.strip()
        if not sep or not name or not values.strip():
            raise ParameterError(f"a grid axis reads NAME=V1,V2,...; got {spec!r}")
        if name in axes:
            raise ParameterError(f"grid axis {name!r} was given twice")
        axes[name] = [v.strip() for v in _top_level_split(values)]
        if "" in axes[name]:
            raise ParameterError(f"grid axis {name!r} has an empty value: {spec!r}")
    return [dict(zip(axes, point, strict=True)) for point in itertools.product(*axes.values())]


def every_section(notebook: Path, point: dict[str, str]) -> dict[str, str]:
    """``point`` with each ``run_<section>`` switch of the notebook on, unless it sets one.

    A sweep feeds the verdicts, so it runs every section, also those that a reader's quick run
    leaves to ``results/``; the switches are not part of the pooling key (``pooling_key``).
    """
    switches = [k for k in notebook_parameters(notebook) if k.startswith(SECTION_SWITCH)]
    return {**dict.fromkeys(switches, "True"), **point}


def _threads_per_run(n_workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // n_workers)


def _run_point(
    notebook: str, point: dict[str, str], runs_root: str, threads: int, tables_only: bool
) -> dict[str, Any]:
    """Run one grid point inside a Dask worker; a failure becomes a row, not an exception."""
    import torch
    from dask.distributed import get_worker

    os.environ.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    # Dask's nanny sets this for the worker's own memory; inherited by the kernel it makes glibc
    # hand memory back after every batch, and PyTorch trains 1.9x slower (ERM, quick: 8.3 s
    # against 15.3 s in one run, mostly system time).
    os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    if "device" not in point and torch.cuda.is_available():  # one GPU per local worker
        name = get_worker().name
        index = name % torch.cuda.device_count() if isinstance(name, int) else 0
        point = {**point, "device": f"cuda:{index}"}
    row: dict[str, Any] = {**point, "status": "complete", "run_dir": None, "error": None}
    try:
        run_dir = run_notebook(notebook, point, runs_root=runs_root, from_cli=True)
    except (RunFailed, ParameterError) as err:  # a device that this worker lacks, say
        return {**row, "status": "failed", "error": str(err)}
    if tables_only:
        prune(run_dir)
    return {**row, "run_dir": str(run_dir)}


def prune(run_dir: Path) -> None:
    """Keep only the tables, parameters and provenance of a run folder (what ``results/`` holds)."""
    for path in run_dir.iterdir():
        if path.is_dir():
            shutil.rmtree(path)
        elif path.suffix not in KEPT_IN_RESULTS:
            path.unlink()


def _check_workers(workers: int | None, scheduler: str | None) -> None:
    """Refuse a local worker count below one or above the cores, or one given with a scheduler."""
    if workers is None:
        return
    if scheduler:
        raise ParameterError("--workers is for a local cluster; a scheduler's has its own workers")
    cores = os.cpu_count() or 1
    if not 1 <= workers <= cores:
        raise ParameterError(
            f"--workers must be in [1, {cores}] (this machine's cores); got {workers}"
        )


def _refuse_repeats(grid: Sequence[dict[str, str]], checked: list[dict[str, Any]]) -> None:
    """Refuse a grid whose points, once read, repeat one (``seed=1,1``; ``level=2,2.0``)."""
    for k, params in enumerate(checked):
        if params in checked[:k]:
            point = {name: params[name] for name in grid[k]}
            raise ParameterError(f"the grid repeats the point {point}; give each point once")


def _client(scheduler: str | None, workers: int | None):
    from dask.distributed import Client, LocalCluster

    logging.getLogger("distributed").setLevel(logging.WARNING)  # progress and failures are ours
    if scheduler:
        return Client(scheduler)
    import torch

    gpus = torch.cuda.device_count()
    n = workers or gpus or max(1, (os.cpu_count() or 1))
    cluster = LocalCluster(
        n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None
    )
    return Client(cluster)


def sweep(
    notebook: str | os.PathLike,
    grid: Sequence[dict[str, str]],
    *,
    runs_root: str | os.PathLike = "runs",
    scheduler: str | None = None,
    workers: int | None = None,
    tables_only: bool = False,
    progress: bool = True,
) -> pd.DataFrame:
    """Run ``notebook`` once per grid point on Dask; one row per point (status, run_dir, error).

    Args:
        notebook: the jupytext chapter.
        grid: parameter overrides per run, as command-line text (``parse_grid``).
        runs_root: where the run folders go (``results`` for the study's kept sweeps).
        scheduler: address of a running Dask scheduler; default a local cluster.
        workers: local workers, at most the cores (default: one per GPU, else one per CPU
            core); each run gets the machine's cores divided by the workers as its thread count.
        tables_only: keep only tables, parameters and provenance of each run (``prune``).
        progress: show a progress bar.
    """
    if not grid:
        raise ParameterError("the grid is empty: give at least one -g NAME=VALUES")
    _check_workers(workers, scheduler)
    points = [every_section(Path(notebook), point) for point in grid]
    checked = [  # every point checked before any kernel starts (devices: by a remote worker)
        resolve_parameters(Path(notebook), p, from_cli=True, device_here=not scheduler)
        for p in points
    ]
    _refuse_repeats(grid, checked)
    grid = points
    client = _client(scheduler, workers)
    try:
        n_workers = max(1, len(client.scheduler_info(n_workers=-1)["workers"]))
        futures = client.map(
            _run_point,
            [str(notebook)] * len(grid),
            list(grid),
            [str(runs_root)] * len(grid),
            [_threads_per_run(n_workers)] * len(grid),
            [tables_only] * len(grid),
            pure=False,
        )
        from dask.distributed import as_completed

        order = {future.key: k for k, future in enumerate(futures)}
        rows: list[dict[str, Any] | None] = [None] * len(grid)
        for future in tqdm(as_completed(futures), total=len(grid), disable=not progress):
            row = future.result()
            rows[order[future.key]] = row
            if row["status"] == "failed":
                tqdm.write(f"failed: {row['error']}")
    finally:
        cluster = getattr(client, "cluster", None)
        client.close()
        if cluster is not None:
            cluster.close()
    return pd.DataFrame(rows)


def complete_runs(runs_root: str | os.PathLike, chapter: str) -> list[Path]:
    """The run folders of ``chapter`` that finished (hidden partial folders are never listed)."""
    folder = Path(runs_root) / chapter
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / "provenance.json").is_file()
    )


def collect(
    runs_root: str | os.PathLike, chapter: str, table: str, where: dict[str, Any] | None = None
) -> pd.DataFrame:
    """Table ``<table>.csv`` of every complete run of ``chapter``, with its parameters as columns.

    The run's folder name and commit come along (``run_id``, ``commit``).

    ``where`` keeps only the runs whose parameters have these values (e.g. a chapter's own
    parameters but the seed, to pool its seeds).

    Raises:
        FileNotFoundError: no complete (matching) run of the chapter holds the table.
    """
    frames = []
    for run_dir in complete_runs(runs_root, chapter):
        path = run_dir / f"{table}.csv"
        if not path.is_file():
            continue
        params = json.loads((run_dir / "params.json").read_text())
        if any(params.get(name) != value for name, value in (where or {}).items()):
            continue
        frame = pd.read_csv(path)
        for name, value in params.items():
            if name not in frame.columns:
                frame[name] = json.dumps(value) if isinstance(value, list | dict) else value
        commit = json.loads((run_dir / "provenance.json").read_text()).get("commit")
        frames.append(frame.assign(run_id=run_dir.name, commit=commit))
    if not frames:
        raise FileNotFoundError(
            f"no complete run of {chapter} under {runs_root} holds {table}.csv"
            + (f" with {where}" if where else "")
            + "; "
            f"run `python -m fairkit sweep notebooks/{chapter}.py ...` (or `make study`)"
        )
    return pd.concat(frames, ignore_index=True)


def chapter_results(chapter: str, table: str, *, mode: str, root=RESULTS, **params) -> pd.DataFrame:
    """``table`` of the kept sweep of ``chapter`` at its default parameters, for a run in ``mode``.

    The sweep's mode is ``config.swept_mode``'s (a quick reader of FairGen's chapters reads the
    study setting's sweep). What the summary pools: the runs of ``make study`` (every seed), not a reader's own runs
    with other settings; ``params`` replace some defaults (another kept sweep of
    ``claims.SWEEPS``). Runs that may not be pooled are refused (``poolable``).
    """
    defaults = notebook_parameters(REPO_ROOT / "notebooks" / f"{chapter}.py")
    where = pooling_key(replaced(defaults, params, chapter=chapter))
    where |= {"mode": swept_mode(chapter, mode)}
    return poolable(root, chapter, table, where=where)


def poolable(runs_root, chapter: str, table: str, *, where: dict[str, Any]) -> pd.DataFrame:
    """``collect``, for pooling: refused when the runs' code is not one chapter's code.

    Raises:
        FileNotFoundError: no matching complete run (``collect``).
        ProvenanceError: a run of a dirty tree, or runs of commits whose chapter code
            differs (``provenance.check_poolable``).
    """
    runs = collect(runs_root, chapter, table, where=where)
    check_poolable(runs, chapter)
    return runs
