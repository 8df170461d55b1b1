"""The kernel side of a run: ``runs.start()`` outside the runner reads the notebook's variables."""

import pytest

from fairkit import runs


def test_start_outside_the_runner_reads_the_notebooks_variables(tmp_path, monkeypatch):
    monkeypatch.delenv("FAIRKIT_RUN_DIR", raising=False)
    monkeypatch.setattr(runs.kernel, "REPO_ROOT", tmp_path)  # run folder under tmp_path
    monkeypatch.chdir(tmp_path)
    namespace = {"mode": "smoke", "seed": 3, "device": "cpu"}
    exec("from fairkit import runs\nrun = runs.start()", namespace)
    run = namespace["run"]
    assert (run.seed, run.mode, run.device) == (3, "smoke", "cpu")
    assert run.settings.n_train == 192 and run.dir.is_relative_to(tmp_path)


def test_start_outside_the_runner_checks_types_like_the_runner(monkeypatch):
    monkeypatch.delenv("FAIRKIT_RUN_DIR", raising=False)
    namespace = {"mode": "smoke", "seed": 1.5, "device": "cpu"}
    with pytest.raises(runs.ParameterError, match="'seed' expects int"):
        exec("from fairkit import runs\nrun = runs.start()", namespace)
