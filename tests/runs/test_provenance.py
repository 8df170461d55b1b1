"""Kept sweeps are pooled only from one chapter's code at clean commits, and flagged when stale."""

import subprocess

import pandas as pd
import pytest

from fairkit.runs import provenance
from fairkit.runs.provenance import ProvenanceError


def git(root, *args) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                          check=True).stdout.strip()  # fmt: skip


def commit(root, message: str) -> str:
    git(root, "add", "-A")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message)
    return git(root, "rev-parse", "--short=12", "HEAD")


@pytest.fixture
def repo(tmp_path):
    """A checkout whose chapter imports fairkit.a, which imports fairkit.sub.b; c is unused."""
    for path, text in {
        "notebooks/99_toy.py": "from fairkit import a\nimport numpy\n",
        "fairkit/__init__.py": "",
        "fairkit/a.py": "def f():\n    from fairkit.sub.b import g\n",
        "fairkit/sub/__init__.py": "",
        "fairkit/sub/b.py": "X = 1\n",
        "fairkit/c.py": "Y = 1\n",
    }.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    git(tmp_path, "init", "-q")
    return tmp_path


def runs_of(*commits) -> pd.DataFrame:
    return pd.DataFrame({"run_id": [f"run-{k}" for k in range(len(commits))], "commit": commits})


def test_a_chapters_code_is_its_notebook_and_every_fairkit_module_it_reaches(repo):
    code = provenance.chapter_code("99_toy", repo)
    assert code == ("fairkit/__init__.py", "fairkit/a.py", "fairkit/sub/__init__.py",
                    "fairkit/sub/b.py", "notebooks/99_toy.py")  # fmt: skip


def test_runs_of_a_dirty_tree_are_refused_by_name(repo):
    first = commit(repo, "one")
    with pytest.raises(ProvenanceError, match=r"dirty.*run-1 \(" + first + r"\+dirty\)"):
        provenance.check_poolable(runs_of(first, first + "+dirty"), "99_toy", root=repo)


def test_commits_are_pooled_only_when_the_chapters_code_is_the_same_at_each(repo):
    first = commit(repo, "one")
    (repo / "fairkit/c.py").write_text("Y = 2\n")  # not the chapter's code
    second = commit(repo, "two")
    provenance.check_poolable(runs_of(first, second), "99_toy", root=repo)
    (repo / "fairkit/sub/b.py").write_text("X = 2\n")  # the chapter's code, two imports away
    third = commit(repo, "three")
    with pytest.raises(ProvenanceError, match=r"differs between them in fairkit/sub/b.py.*run-"):
        provenance.check_poolable(runs_of(first, third), "99_toy", root=repo)


def test_a_sweep_is_stale_once_its_chapters_code_changes(repo):
    first = commit(repo, "one")
    (repo / "fairkit/c.py").write_text("Y = 2\n")
    assert provenance.sweep_status(first, "99_toy", root=repo) == "current"
    (repo / "fairkit/a.py").write_text("def f():\n    return 2\n")  # uncommitted counts too
    assert provenance.staleness(first, "99_toy", root=repo) == ["fairkit/a.py"]
    assert provenance.sweep_status(first, "99_toy", root=repo).startswith("stale: 1 of its")
    assert provenance.staleness("0123456789ab", "99_toy", root=repo) is None  # unknown commit
