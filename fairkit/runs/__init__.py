"""The runner: chapters run with papermill into run folders; the kernel side of a run.

Science never imports this package; only notebooks and the command line do.
"""

from fairkit.config import MODES
from fairkit.runs.kernel import RESULTS, Run, git_commit, launch_badges, package_versions, start
from fairkit.runs.parameters import (
    ParameterError,
    check_parameters,
    notebook_parameters,
    resolve_parameters,
)
from fairkit.runs.runner import RunFailed, build_book, new_run_id, run_notebook, toc_chapters
from fairkit.runs.sweep import chapter_results, collect, complete_runs, parse_grid, prune, sweep

__all__ = [
    "MODES",  # the modes a chapter runs in: smoke (tests), quick (CPU), full (GPU)
    "ParameterError",
    "RESULTS",  # results/: the kept sweeps behind the book's verdicts  # a parameter name or value that the notebook does not accept
    "Run",  # one execution of a chapter: folder, parameters, device, provenance
    "RunFailed",  # a chapter raised; its executed notebook is kept beside the runs
    "build_book",  # run every chapter of _toc.yml and render the book
    "chapter_results",  # a table of a chapter's kept sweep at its default parameters
    "check_parameters",
    "collect",  # one table of every complete run of a chapter, parameters as columns
    "complete_runs",  # the run folders of a chapter that finished  # values checked against the types of their defaults
    "git_commit",  # the checkout's commit, +dirty when it has changes
    "launch_badges",  # Binder and Colab links of a chapter
    "new_run_id",  # a run's folder name: time, mode, seed, parameter hash
    "notebook_parameters",  # the defaults of a notebook's parameters cell
    "package_versions",
    "parse_grid",  # NAME=V1,V2 axes into the points of a sweep
    "prune",  # keep a run folder's tables, parameters and provenance only  # versions of the packages a result depends on
    "resolve_parameters",  # a notebook's defaults merged with checked overrides
    "run_notebook",  # execute one chapter into runs/<chapter>/<run-id>/
    "start",
    "sweep",  # a chapter over a grid of parameters, on Dask distributed  # the kernel side: begin a chapter's run
    "toc_chapters",  # the chapters listed in _toc.yml
]
