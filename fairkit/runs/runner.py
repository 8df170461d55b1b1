"""The runner side: execute a chapter with papermill into a run folder, and build the book.

A chapter's parameters are checked against its ``parameters`` cell before any kernel starts;
the run folder is filled under a hidden name and moved into place only when every cell ran.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from fairkit.config import settings
from fairkit.io import write_atomic, write_json
from fairkit.runs.kernel import CHAPTER_ENV, REPO_ROOT, RUN_DIR_ENV, RUN_ID_ENV
from fairkit.runs.parameters import resolve_parameters

log = logging.getLogger(__name__)


class RunFailed(RuntimeError):
    """A chapter raised while it was executed; the executed notebook is kept for reading."""


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
    as ``<run-id>.failed.ipynb`` for debugging.

    Returns:
        The run folder.
    """
    import jupytext
    import papermill as pm

    notebook = Path(notebook)
    if not notebook.is_file():
        raise FileNotFoundError(f"notebook {notebook} not found")
    params = resolve_parameters(notebook, parameters, from_cli=from_cli)
    chapter = notebook.stem
    run_id = run_id or new_run_id(params)
    chapter_dir = Path(runs_root).resolve() / chapter
    final, partial = chapter_dir / run_id, chapter_dir / f".{run_id}.partial"
    if final.exists():
        raise FileExistsError(f"run folder {final} exists already")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    write_json(partial / "params.json", params)
    executed = partial / "notebook.ipynb"
    started = time.perf_counter()
    try:
        with _environ(
            **{RUN_DIR_ENV: str(partial), CHAPTER_ENV: chapter, RUN_ID_ENV: run_id},
            HF_HUB_OFFLINE="1",
            PYTHONHASHSEED="0",
        ):
            pm.execute_notebook(
                jupytext.read(notebook),
                str(executed),
                parameters=params,
                kernel_name="python3",
                language="python",
                progress_bar=False,
                log_output=log_output,
                cwd=str(partial),
                start_timeout=start_timeout,
            )
    except BaseException as err:
        failed = chapter_dir / f"{run_id}.failed.ipynb"
        if executed.exists():
            os.replace(executed, failed)
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(err, KeyboardInterrupt):
            raise
        raise RunFailed(f"{chapter} failed ({err.__class__.__name__}); read {failed}") from err
    _hide_parameter_cells(executed)
    provenance_path = partial / "provenance.json"
    if not provenance_path.exists():
        shutil.rmtree(partial, ignore_errors=True)
        raise RunFailed(f"{chapter} never called run.finish(), so it wrote no provenance.json")
    provenance = json.loads(provenance_path.read_text())
    provenance["runner_wall_time_s"] = round(time.perf_counter() - started, 3)
    write_json(provenance_path, provenance)
    os.replace(partial, final)
    log.info("%s finished in %.1f s: %s", chapter, provenance["runner_wall_time_s"], final)
    return final


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
