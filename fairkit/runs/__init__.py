"""The runner: chapters run with papermill into run folders; the kernel side of a run.

Science never imports this package; only notebooks and the command line do.
"""

from fairkit.config import MODES
from fairkit.runs.kernel import RESULTS, Run, git_commit, launch_badges, package_versions, start
from fairkit.runs.parameters import (
    ParameterError,
    check_parameters,
    notebook_parameters,
    notebook_rules,
    resolve_parameters,
)
from fairkit.runs.provenance import STALE, ProvenanceError, judged_claims, scale, staleness
from fairkit.runs.runner import (
    RunFailed,
    RunInterrupted,
    build_book,
    new_run_id,
    run_notebook,
    toc_chapters,
)
from fairkit.runs.sweep import chapter_results, collect, complete_runs, parse_grid, prune, sweep

__all__ = [  # grouped by what they are for
    "MODES",  # smoke (tests), quick (CPU, minutes), study (the kept sweeps' size), full (GPU)
    # parameters
    "ParameterError",  # a parameter name or value that the notebook does not accept
    "check_parameters",  # values checked against their rules (types of their defaults)
    "notebook_parameters",  # the defaults of a notebook's parameters cell
    "notebook_rules",  # each parameter's type and allowed values (its parameter-rules line)
    "resolve_parameters",  # a notebook's defaults merged with checked overrides
    # runs
    "RunFailed",  # a chapter raised; its executed notebook is kept beside the runs
    "RunInterrupted",  # Ctrl-C or SIGTERM stopped a run; its notebook is kept as well
    "build_book",  # run every chapter of _toc.yml and render the book
    "new_run_id",  # a run's folder name: time, mode, seed, parameter hash
    "run_notebook",  # execute one chapter into runs/<chapter>/<run-id>/
    "toc_chapters",  # the chapters listed in _toc.yml
    # the kernel side
    "Run",  # one execution of a chapter: folder, parameters, device, provenance
    "start",  # begin a chapter's run
    "git_commit",  # the checkout's commit, +dirty when it has changes
    "launch_badges",  # Binder and Colab links of a chapter
    "package_versions",  # versions of the packages a result depends on
    # sweeps and results
    "RESULTS",  # results/: the kept sweeps behind the book's verdicts
    "sweep",  # a chapter over a grid of parameters, on Dask distributed
    "parse_grid",  # NAME=V1,V2 axes into the points of a sweep
    "collect",  # one table of every complete run of a chapter, parameters as columns
    "complete_runs",  # the run folders of a chapter that finished
    "chapter_results",  # a table of a chapter's kept sweep at its default parameters
    "prune",  # keep a run folder's tables, parameters and provenance only
    # provenance of kept sweeps
    "ProvenanceError",  # runs that may not be pooled: a dirty tree, or mixed chapter code
    "staleness",  # the chapter's files changed since a sweep's commit
    "scale",  # what a sweep's verdicts rest on: mode, sizes, backbone, seeds, device
    "judged_claims",  # the claims judged on kept sweeps, stale ones marked
    "STALE",  # the mark after a stale sweep's verdict
]
