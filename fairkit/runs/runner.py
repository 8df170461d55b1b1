"""The runner side: execute a chapter with papermill into a run folder, and build the book.

A chapter's parameters are checked against its ``parameters`` cell before any kernel starts;
the run folder is filled under a hidden name and moved into place only when every cell ran. A
failure says in one line what failed (a cell's error and section, or the folder that could not
be written) and where its executed notebook is kept.
Ctrl-C and SIGTERM stop a run the same way (``RunInterrupted``); the hidden folder of a run that
was killed outright (SIGKILL) is removed by the chapter's next run (``remove_dead_partials``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, NoReturn

from fairkit.config import settings
from fairkit.io import write_atomic, write_json
from fairkit.runs.kernel import CHAPTER_ENV, REPO_ROOT, RUN_DIR_ENV, RUN_ID_ENV
from fairkit.runs.parameters import ParameterError, resolve_parameters

log = logging.getLogger(__name__)
PAPERMILL_ERROR = "papermill-error-cell-tag"  # the tag of the cells papermill adds on an error


@contextlib.contextmanager
def _kernel_start_lock():
    """Hold a machine-wide lock from before a kernel starts until it answers; yield the release.

    jupyter picks free TCP ports, then the kernel binds them: two kernels starting at once (a
    sweep's workers, parallel tests) could pick the same port, and one died with "Address
    already in use". Only the start is serialised (a few seconds); the cells run in parallel.
    """
    with open(Path(tempfile.gettempdir()) / "fairkit-kernel-start.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield lambda **_: fcntl.flock(handle, fcntl.LOCK_UN)
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class RunFailed(RuntimeError):
    """A chapter raised, or its run folder could not be written; its notebook is kept if whole."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a chapter; the notebook executed so far is kept for reading.

    Its message is one line naming that notebook, and ``signum`` the signal (SIGINT or SIGTERM).
    """

    def __init__(self, message: str, *, signum: int):
        super().__init__(message)
        self.signum = signum


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would raise ``KeyboardInterrupt``."""


def new_run_id(params: dict[str, Any]) -> str:
    """Name a run by its start time, seed and a short hash of its parameters."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    digest = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:6]
    return f"{stamp}-{params['mode']}-s{params['seed']}-{digest}-{uuid.uuid4().hex[:4]}"


@contextlib.contextmanager
def _environ(**values: str):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def _hide_parameter_cells(notebook_path: Path) -> None:
    """Tag the raw and injected parameter cells ``remove-cell``: the banner states them once."""
    import nbformat

    nb = nbformat.read(notebook_path, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if {"parameters", "injected-parameters"} & set(tags) and "remove-cell" not in tags:
            tags.append("remove-cell")
    write_atomic(notebook_path, lambda tmp: nbformat.write(nb, tmp))


def run_notebook(
    notebook: str | os.PathLike,
    parameters: dict[str, Any] | None = None,
    *,
    runs_root: str | os.PathLike = "runs",
    run_id: str | None = None,
    from_cli: bool = False,
    start_timeout: int = 120,
    log_output: bool = False,
) -> Path:
    """Execute a jupytext notebook with papermill into ``runs/<chapter>/<run-id>/``.

    The folder is filled under a hidden name and renamed into place only if every cell ran, so
    a failed run never leaves a half-written run folder; its executed notebook is kept beside it
    as ``<run-id>.failed.ipynb`` for debugging. SIGTERM stops a run as Ctrl-C does: both raise
    ``RunInterrupted`` and leave no hidden folder.

    Returns:
        The run folder.
    """
    notebook = Path(notebook)
    params = resolve_parameters(notebook, parameters, from_cli=from_cli)
    if Path(runs_root).exists() and not Path(runs_root).is_dir():
        raise ParameterError(f"runs root {runs_root} is not a folder")
    chapter = notebook.stem
    run_id = run_id or new_run_id(params)
    chapter_dir = Path(runs_root).resolve() / chapter
    final, partial = chapter_dir / run_id, chapter_dir / f".{run_id}.partial"
    if final.exists():
        raise FileExistsError(f"run folder {final} exists already")
    started = time.perf_counter()
    with _sigterm_as_interrupt(), _claimed(partial):
        with _writing_under(chapter_dir):
            write_json(partial / "params.json", params)
        _execute(
            notebook,
            params,
            partial,
            run_id=run_id,
            start_timeout=start_timeout,
            log_output=log_output,
        )
        wall_time = _settle(partial, final, started=started)
    log.info("%s finished in %.1f s: %s", chapter, wall_time, final)
    return final


@contextlib.contextmanager
def _writing_under(chapter_dir: Path):
    """Within the block, an ``OSError`` (not an existing name) is ``RunFailed`` naming a folder."""
    try:
        yield
    except FileExistsError:
        raise
    except OSError as err:
        raise RunFailed(f"{chapter_dir.name}: {_cannot_write(chapter_dir, err)}") from err


def _cannot_write(folder: Path, err: OSError) -> str:
    return f"cannot write under {folder}: {err.strerror or err}"


def _execute(
    notebook: Path,
    params: dict[str, Any],
    partial: Path,
    *,
    run_id: str,
    start_timeout: int,
    log_output: bool,
) -> None:
    """Run ``notebook`` with papermill into ``partial``; on failure keep its notebook beside it.

    Raises:
        RunInterrupted: Ctrl-C or SIGTERM stopped the run.
        RunFailed: anything else stopped it.
    """
    import jupytext
    import papermill as pm

    chapter, executed = notebook.stem, partial / "notebook.ipynb"
    try:
        with (
            _kernel_start_lock() as started,
            _environ(
                **{RUN_DIR_ENV: str(partial), CHAPTER_ENV: chapter, RUN_ID_ENV: run_id},
                HF_HUB_OFFLINE="1",
                PYTHONHASHSEED="0",
            ),
        ):
            pm.execute_notebook(
                jupytext.read(notebook),
                str(executed),
                on_notebook_start=started,
                parameters=params,
                kernel_name="python3",
                language="python",
                progress_bar=False,
                log_output=log_output,
                cwd=str(partial),
                start_timeout=start_timeout,
                # The kernel's own log holds only noise (unencrypted TCP, the socket it loses
                # when a run is interrupted); a cell's error is in the executed notebook.
                extra_arguments=["--IPKernelApp.log_level=CRITICAL"],
            )
    except KeyboardInterrupt as err:
        signum = signal.SIGTERM if isinstance(err, _Terminated) else signal.SIGINT
        where = _keep_failed(executed, partial.parent / f"{run_id}.failed.ipynb")
        raise RunInterrupted(
            f"{chapter} stopped by {signal.Signals(signum).name}; {where}", signum=signum
        ) from None
    except BaseException as err:
        _fail(err, partial, run_id)


def _fail(err: BaseException, partial: Path, run_id: str) -> NoReturn:
    """Raise ``RunFailed``: what stopped the run, and its notebook (kept beside, if whole)."""
    failed = partial.parent / f"{run_id}.failed.ipynb"
    where = _keep_failed(partial / "notebook.ipynb", failed)
    reason = _reason(err, failed, partial.parent)
    raise RunFailed(f"{partial.parent.name} failed: {reason}; {where}") from err


def _reason(err: BaseException, notebook: Path, chapter_dir: Path) -> str:
    """One line on what stopped a run: a cell's error and where, a folder not written, ..."""
    from papermill.exceptions import PapermillExecutionError

    if isinstance(err, PapermillExecutionError):
        return f"{err.ename}: {_first_line(err.evalue)} ({_cell(notebook, err)})"
    if isinstance(err, OSError):
        return _cannot_write(chapter_dir, err)
    if isinstance(err, RunFailed):
        return str(err)
    return f"{type(err).__name__}: {_first_line(str(err))}".removesuffix(": ")


def _first_line(text: str | None) -> str:
    return next(iter((text or "").strip().splitlines()), "")


def _cell(notebook: Path, err) -> str:
    """``cell [3], section 'Data'``: the failed cell's count and the last heading above it."""
    try:
        cells = json.loads(notebook.read_text())["cells"]
    except (OSError, ValueError, KeyError, TypeError):  # no notebook kept
        cells = []
    ran = [c for c in cells if PAPERMILL_ERROR not in c.get("metadata", {}).get("tags", [])]
    headings = [
        line.lstrip("#").strip()
        for cell in ran[: err.cell_index]
        if cell.get("cell_type") == "markdown"
        for line in "".join(cell.get("source", "")).splitlines()
        if line.startswith("#")
    ]
    return f"cell [{err.exec_count}]" + (f", section {headings[-1]!r}" if headings else "")


def _keep_failed(executed: Path, failed: Path) -> str:
    """Move a failed run's notebook to ``failed`` if whole; say where to read it, or why not."""
    if not executed.exists():
        return "it wrote no notebook"
    try:
        json.loads(executed.read_text())
    except (OSError, ValueError):  # a write cut short (a full disk): nothing to read
        return "its notebook was cut short, so none is kept"
    os.replace(executed, failed)
    return f"read {failed}"


def _settle(partial: Path, final: Path, *, started: float) -> float:
    """Finish the run folder and move it to ``final``; a failure keeps the executed notebook."""
    try:
        if not (partial / "provenance.json").exists():
            raise RunFailed("it never called run.finish(), so it wrote no provenance.json")
        wall_time = _finish(partial, started=started)
        os.replace(partial, final)
    except Exception as err:
        _fail(err, partial, final.name)
    return wall_time


def _finish(partial: Path, *, started: float) -> float:
    """Hide the parameter cells, add the runner's wall time to the provenance and return it."""
    _hide_parameter_cells(partial / "notebook.ipynb")
    provenance_path = partial / "provenance.json"
    provenance = json.loads(provenance_path.read_text())
    provenance["runner_wall_time_s"] = round(time.perf_counter() - started, 3)
    write_json(provenance_path, provenance)
    return provenance["runner_wall_time_s"]


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise _Terminated(signal.Signals(signum).name)


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """Within the block, SIGTERM raises ``KeyboardInterrupt`` as Ctrl-C does, so the run cleans up.

    Python lets only the main thread set signal handlers; in another thread (a Dask worker's)
    the block changes nothing, and ``remove_dead_partials`` cleans up after a killed worker.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _owner_file(partial: Path) -> Path:
    return partial.with_name(partial.name + ".owner")


def _claim(partial: Path) -> None:
    """Create the owner file of ``partial``, naming this process and host, before the folder.

    Raises:
        FileExistsError: a live run holds ``partial`` (the same ``run_id`` given twice).
    """
    owner = _owner_file(partial)
    try:
        fd = os.open(owner, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    except FileExistsError:
        raise FileExistsError(
            f"{partial} belongs to a run in progress (see {owner}); "
            "expected a run id that no live run uses"
        ) from None
    try:
        with os.fdopen(fd, "w") as file:
            json.dump({"pid": os.getpid(), "host": socket.gethostname()}, file)
    except BaseException:  # an empty owner file would read as a live run's for ever
        owner.unlink(missing_ok=True)
        raise


def _owner_alive(owner: Path) -> bool:
    """Whether the process named in ``owner`` may still run; unsure counts as alive."""
    try:
        claim = json.loads(owner.read_text())
    except FileNotFoundError:
        return False
    except ValueError:  # being written this instant
        return True
    if not isinstance(claim, dict) or not isinstance(claim.get("pid"), int):
        return True  # not written by this runner: leave it to a person
    if claim.get("host") != socket.gethostname():
        return True  # another machine's process: this one cannot tell
    try:
        os.kill(claim["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_dead_partials(chapter_dir: Path) -> None:
    """Remove the hidden folders of ``chapter_dir`` whose run's process is gone.

    A run killed outright (SIGKILL) cannot clean up. Age cannot tell its folder from one still
    being filled (a sweep runs a chapter in several processes at once), so each run writes
    ``.<run-id>.partial.owner`` (pid, host) beside its folder before making it and deletes it
    only after the folder is renamed or removed: a folder whose owner is dead is never in use.
    Kept: folders owned by a live pid (a reused pid too: untidy, never unsafe) or by another
    host (its pids cannot be checked from here). Removed: those of a dead pid of this host, and
    those with no owner file, which only runners from before owner files left.
    """
    if not chapter_dir.is_dir():
        return
    for partial in chapter_dir.glob(".*.partial"):
        if partial.is_dir() and not _owner_alive(_owner_file(partial)):
            log.info("removing %s: the run that was filling it is gone", partial)
            shutil.rmtree(partial, ignore_errors=True)
            _owner_file(partial).unlink(missing_ok=True)
    for owner in chapter_dir.glob(".*.partial.owner"):  # those killed before or after the folder
        if not _owner_alive(owner):
            owner.unlink(missing_ok=True)


@contextlib.contextmanager
def _claimed(partial: Path):
    """Create ``partial`` for this run (after removing dead runs' folders); remove it on exit.

    After the block renamed ``partial`` into place, only its owner file is left to remove.
    A folder that cannot be written is ``RunFailed``, naming it.
    """
    with _writing_under(partial.parent):
        remove_dead_partials(partial.parent)
        partial.parent.mkdir(parents=True, exist_ok=True)
        _claim(partial)
    try:
        with _writing_under(partial.parent):
            partial.mkdir()
        yield
    finally:
        shutil.rmtree(partial, ignore_errors=True)
        _owner_file(partial).unlink(missing_ok=True)


def toc_chapters(root: str | os.PathLike = REPO_ROOT) -> list[str]:
    """Return the chapter names listed in ``_toc.yml`` (its entries under ``book/chapters/``)."""
    import yaml

    toc = yaml.safe_load((Path(root) / "_toc.yml").read_text())
    entries = list(_toc_files(toc))
    return [Path(f).name for f in entries if Path(f).parent == Path("book/chapters")]


def _toc_files(node: Any):
    if isinstance(node, dict):
        if "file" in node:
            yield node["file"]
        for value in node.values():
            yield from _toc_files(value)
    elif isinstance(node, list):
        for item in node:
            yield from _toc_files(item)


def build_book(
    mode: str = "quick", *, root: str | os.PathLike = REPO_ROOT, render: bool = True
) -> Path:
    """Run every chapter of ``_toc.yml`` in ``mode`` into ``book/chapters/`` and render the book.

    Returns:
        The rendered ``_build/html`` folder (or the chapters folder when ``render`` is false).
    """
    from tqdm.auto import tqdm

    settings(mode)
    root = Path(root)
    out = root / "book" / "chapters"
    out.mkdir(parents=True, exist_ok=True)
    for chapter in tqdm(toc_chapters(root), desc=f"chapters ({mode})", unit="chapter"):
        run_dir = run_notebook(
            root / "notebooks" / f"{chapter}.py", {"mode": mode}, runs_root=root / "runs"
        )
        write_atomic(
            out / f"{chapter}.ipynb", lambda tmp, d=run_dir: shutil.copy(d / "notebook.ipynb", tmp)
        )
    if not render:
        return out
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    subprocess.run(
        [str(jupyter_book), "build", str(root), "--warningiserror", "--keep-going", "--quiet"],
        check=True,
    )
    return root / "_build" / "html"
