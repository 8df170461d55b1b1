"""Which code a kept sweep ran: runs that may be pooled together, and sweeps that went stale.

A chapter's code is its notebook and every ``fairkit`` module it imports, followed through
their own imports (read from the source, nothing is executed). Runs of a dirty tree are never
pooled: their code is in no commit. Runs of different commits are pooled only when the
chapter's code is the same at each of them. A sweep is *stale* when that code has changed
since its commit: its numbers then describe code that no longer exists.
"""

from __future__ import annotations

import ast
import json
import subprocess
from functools import cache
from pathlib import Path

import pandas as pd

from fairkit.runs.kernel import REPO_ROOT

DIRTY = "+dirty"


class ProvenanceError(ValueError):
    """Runs that must not be pooled: a dirty tree, or commits whose chapter code differs."""


def _module_file(name: str, root: Path) -> Path | None:
    """The source file of module ``name`` under ``root`` (a package's ``__init__.py``)."""
    base = root.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imported(path: Path) -> set[str]:
    """The ``fairkit`` modules a source file imports, with the packages that hold them."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}  # a submodule, if one
    found = set()
    for name in names:
        parts = name.split(".")
        if parts[0] == "fairkit":
            found |= {".".join(parts[:k]) for k in range(1, len(parts) + 1)}
    return found


@cache
def chapter_code(chapter: str, root: Path = REPO_ROOT) -> tuple[str, ...]:
    """The files whose change changes a chapter's numbers, relative to ``root``, sorted."""
    notebook = root / "notebooks" / f"{chapter}.py"
    if not notebook.is_file():
        raise FileNotFoundError(f"no chapter {chapter!r}: {notebook} does not exist")
    files, todo = {notebook}, [notebook]
    while todo:
        for name in _imported(todo.pop()):
            path = _module_file(name, root)
            if path is not None and path not in files:
                files.add(path)
                todo.append(path)
    return tuple(sorted(str(p.relative_to(root)) for p in files))


def changed_files(
    commit: str, files, *, since: str | None = None, root: Path = REPO_ROOT
) -> list[str] | None:
    """Which of ``files`` differ between ``commit`` and ``since`` (default: the working tree).

    None when git cannot tell (no repository, or a commit it does not hold).
    """
    args = ["git", "-C", str(root), "diff", "--name-only", commit.removesuffix(DIRTY)]
    args += [since] if since else []
    try:
        out = subprocess.run(
            [*args, "--", *files], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return sorted(line for line in out.splitlines() if line)


def check_poolable(runs: pd.DataFrame, chapter: str, *, root: Path = REPO_ROOT) -> None:
    """Refuse to pool runs (columns ``run_id``, ``commit``) of a dirty tree or of mixed code.

    Raises:
        ProvenanceError: naming the runs of a dirty tree, or the commits whose chapter code
            differs and the files that differ.
    """
    by_run = runs[["run_id", "commit"]].drop_duplicates().astype(str)
    dirty = by_run[by_run["commit"].str.endswith(DIRTY) | (by_run["commit"] == "unknown")]
    if len(dirty):
        raise ProvenanceError(
            f"{chapter}: runs of a dirty or unknown tree cannot be pooled (their code is in no "
            f"commit): {', '.join(f'{r.run_id} ({r.commit})' for r in dirty.itertuples())}; "
            "rerun the sweep from a clean checkout"
        )
    commits = sorted(by_run["commit"].unique())
    for other in commits[1:]:
        differ = changed_files(commits[0], chapter_code(chapter, root), since=other, root=root)
        if differ is None or differ:
            runs_of = by_run.groupby("commit")["run_id"].apply(", ".join)
            raise ProvenanceError(
                f"{chapter}: runs of commits {commits[0]} and {other} cannot be pooled: the "
                + ("chapter's code differs between them in " + ", ".join(differ) if differ
                   else "repository does not hold both commits")
                + "; runs: " + "; ".join(f"{c}: {r}" for c, r in runs_of.items())
            )  # fmt: skip


def staleness(commit: str, chapter: str, *, root: Path = REPO_ROOT) -> list[str] | None:
    """The chapter's files changed since ``commit`` (empty: current; None: git cannot tell)."""
    return changed_files(commit, chapter_code(chapter, root), root=root)


SIZE_KEYS = {  # the settings that hold a chapter's image side and training images
    "05_fairgen": ("fairgen_size", "fairgen_train"),  # FairGen's own, smaller generators' sizes
}


def scale(runs_root: Path, chapter: str, runs: pd.DataFrame) -> str:
    """What a sweep's verdicts rest on: mode, image size, training images, backbone, seeds, device.

    Read from the ``provenance.json`` of each run in ``runs`` (a ``collect`` table); a value
    that differs between runs is shown with all its values.
    """
    seen: dict[str, set] = {}
    for run_id in runs["run_id"].unique():
        record = json.loads((Path(runs_root) / chapter / run_id / "provenance.json").read_text())
        sizes, params = record.get("settings", {}), record.get("parameters", {})
        side, train = SIZE_KEYS.get(chapter, ("image_size", "n_train"))
        for key, value in (
            ("mode", record.get("mode")),
            ("px", params.get("image_size") or sizes.get(side)),
            ("training images", params.get("n_train") or sizes.get(train)),
            ("backbone", sizes.get("backbone")),
            ("device", record.get("device_name") or record.get("device")),
        ):
            seen.setdefault(key, set()).add(str(value))
    said = {k: "/".join(sorted(v)) for k, v in seen.items()}
    return (
        f"{said['mode']} mode, {said['px']} px, {said['training images']} training images, "
        f"{said['backbone']}, {runs['seed'].nunique()} seeds, {said['device']}"
    )


STALE = " (stale sweep)"


def sweep_status(commit: str, chapter: str, *, root: Path = REPO_ROOT) -> str:
    """The word "current", or why a sweep's verdicts are not findings about today's code."""
    changed = staleness(commit, chapter, root=root)
    if changed is None:
        return "stale: git cannot compare its commit with this checkout"
    if changed:
        return f"stale: {len(changed)} of its files changed since ({', '.join(changed)})"
    return "current"


def judged_claims(sweeps: dict[tuple[str, str], dict[str, pd.DataFrame]]) -> pd.DataFrame:
    """The claims judged on kept sweeps (``claims.judge_all``), marked where a sweep is stale.

    ``sweeps`` maps a claim source (chapter, sweep) to that sweep's tables (``runs.collect``
    frames, already checked by ``check_poolable``): ``comparisons`` and those of
    ``studies.evidence.TABLES``. A stale sweep's verdict reads "<word> (stale sweep)".
    """
    from fairkit import claims
    from fairkit.studies import evidence

    judged = claims.judge_all({s: evidence.rows(s[0], t) for s, t in sweeps.items()})
    if judged.empty:
        return judged
    status = {
        source: sweep_status(str(tables["comparisons"]["commit"].iloc[0]), source[0])
        for source, tables in sweeps.items()
    }
    judged["sweep status"] = [
        status[c, s] for c, s in zip(judged["chapter"], judged["sweep"], strict=True)
    ]
    stale = judged["sweep status"] != "current"
    judged["verdict"] = judged["verdict"].where(~stale, judged["verdict"] + STALE)
    return judged
