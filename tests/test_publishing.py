"""The book is published by one valid workflow and points at one repository address."""

import subprocess
import sys

import pytest
import yaml

from fairkit.runs import launch_badges

from .conftest import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"


def schema_check(path) -> subprocess.CompletedProcess:
    """check-jsonschema against its bundled GitHub-workflow schema (no network)."""
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows"]
        + [str(path)],
        capture_output=True,
        text=True,
    )


def test_the_book_workflow_is_a_valid_github_workflow():
    checked = schema_check(WORKFLOW)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_schema_check_refuses_a_broken_workflow(tmp_path):
    lines = WORKFLOW.read_text().splitlines(keepends=True)
    path = tmp_path / "broken.yml"
    path.write_text("".join(line for line in lines if not line.strip().startswith("runs-on:")))
    checked = schema_check(path)
    assert checked.returncode != 0
    assert "runs-on" in checked.stdout + checked.stderr


def test_the_workflow_tests_builds_and_publishes_as_the_readme_says():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    assert workflow[True]["push"]["branches"] == ["main"]  # YAML 1.1 reads the key "on" as True
    runs = "\n".join(step.get("run", "") for step in workflow["jobs"]["publish"]["steps"])
    found = [runs.find(command) for command in ("make test", "make book", "make publish")]
    assert -1 not in found and found == sorted(found), runs
    readme = (ROOT / "README.md").read_text()
    assert all(command in readme for command in ("make test", "make book", "make publish"))


def test_the_repository_address_is_configured_once():
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    slug = url.removeprefix("https://github.com/")
    assert slug != url, f"_config.yml's repository.url is not a GitHub address: {url}"
    badges = launch_badges("02_bias", root=ROOT)
    assert (
        f"mybinder.org/v2/gh/{slug}/" in badges
        and f"colab.research.google.com/github/{slug}/" in badges
    )
    tracked = subprocess.run(
        ["git", "-C", str(ROOT), "grep", "-l", "--fixed-strings", slug],
        capture_output=True,
        text=True,
    )
    if tracked.returncode > 1:
        pytest.skip("not a git checkout")
    assert tracked.stdout.split() == ["_config.yml"]
