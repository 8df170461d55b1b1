"""Sweeps on Dask: every grid point runs, a failure is reported, complete runs are collected."""

import sys

import pytest

from fairkit import runs

BODY = (
    "import os\n"
    "import pandas as pd\n"
    "if seed == fail_seed:\n"
    "    raise RuntimeError('made to fail')\n"
    "trim = os.environ.get('MALLOC_TRIM_THRESHOLD_', 'unset')\n"
    "run.save_table(pd.DataFrame({'value': [seed * 10 + level], 'trim': [trim]}), 'metrics')\n"
    "run.finish()"
)


def test_grid_is_every_combination_of_its_axes():
    grid = runs.parse_grid(["seed=0,1", "level=2,3,4"])
    assert len(grid) == 6 and {"seed": "1", "level": "4"} in grid


def test_a_comma_inside_brackets_belongs_to_one_list_value():
    grid = runs.parse_grid(["seed=0,1", "backbones=['resnet18', 'vgg11'],[]"])
    assert len(grid) == 4
    assert {"seed": "1", "backbones": "['resnet18', 'vgg11']"} in grid
    assert {"seed": "0", "backbones": "[]"} in grid
    nested = runs.parse_grid(["x=[[1, 2], [3, 4]],'a,b'"])
    assert [p["x"] for p in nested] == ["[[1, 2], [3, 4]]", "'a,b'"]


@pytest.mark.parametrize("bad", ["seed", "seed=", "=1,2", "seed=1,,2"])
def test_malformed_axis_is_refused(bad):
    with pytest.raises(runs.ParameterError, match="grid axis"):
        runs.parse_grid([bad])


def test_bad_value_is_refused_before_any_run(write_notebook, tmp_path):
    nb = write_notebook(BODY, extra_params="fail_seed = -1\nlevel = 0")
    with pytest.raises(runs.ParameterError, match="level"):
        runs.sweep(nb, runs.parse_grid(["level=1,x"]), runs_root=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_sweep_runs_each_point_reports_failure_and_collects_complete_runs(write_notebook, tmp_path):
    nb = write_notebook(BODY, extra_params="fail_seed = -1\nlevel = 0")
    grid = runs.parse_grid(["seed=0,1", "level=2"]) + [{"seed": "5", "fail_seed": "5"}]
    table = runs.sweep(nb, grid, runs_root=tmp_path / "runs", workers=2, progress=False)
    assert list(table["status"]) == ["complete"] * 2 + ["failed"]
    assert "99_toy failed" in table["error"].iloc[-1]
    assert len(runs.complete_runs(tmp_path / "runs", "99_toy")) == 2
    metrics = runs.collect(tmp_path / "runs", "99_toy", "metrics")
    assert sorted(metrics["value"]) == [2, 12]
    assert set(metrics["seed"]) == {0, 1} and set(metrics["level"]) == {2}
    assert set(metrics["trim"]) == {"unset"}  # Dask's setting for its workers halves training


def test_collect_names_the_missing_table(tmp_path):
    with pytest.raises(FileNotFoundError, match="metrics.csv"):
        runs.collect(tmp_path, "99_toy", "metrics")


def _fake_run(root, name, seed, value, *, complete=True, mode="quick"):
    folder = root / "03_spare" / name
    folder.mkdir(parents=True)
    (folder / "params.json").write_text(f'{{"mode": "{mode}", "seed": {seed}}}')
    (folder / "metrics.csv").write_text(f"value\n{value}\n")
    if complete:
        (folder / "provenance.json").write_text('{"commit": "abc"}')


def test_collect_reads_only_complete_runs_with_the_asked_parameters(tmp_path):
    _fake_run(tmp_path, "run-a", 0, 1.0)
    _fake_run(tmp_path, "run-b", 1, 2.0)
    _fake_run(tmp_path, ".run-c.partial", 2, 99.0)  # still being written
    _fake_run(tmp_path, "run-d", 3, 99.0, complete=False)  # no provenance: never finished
    _fake_run(tmp_path, "run-e", 4, 99.0, mode="smoke")
    table = runs.collect(tmp_path, "03_spare", "metrics", where={"mode": "quick"})
    assert sorted(table["value"]) == [1.0, 2.0]
    assert set(table["commit"]) == {"abc"} and set(table["seed"]) == {0, 1}


def test_a_run_inside_the_results_folder_does_not_pool_its_own_sweep(tmp_path):
    from fairkit.config import settings
    from fairkit.runs import Run

    _fake_run(tmp_path, "run-a", 0, 1.0)
    params = {"mode": "quick", "seed": 1}
    inside = Run(
        "03_spare", params, tmp_path / "03_spare" / ".run-b.partial", "cpu", settings("quick")
    )
    outside = Run("03_spare", params, tmp_path.parent / "elsewhere", "cpu", settings("quick"))
    assert inside.sweep_table("metrics", root=tmp_path) is None
    assert list(outside.sweep_table("metrics", root=tmp_path)["value"]) == [1.0]


def test_a_sweep_turns_every_section_switch_on_and_pools_across_switches(write_notebook, tmp_path):
    from fairkit.config import settings
    from fairkit.runs import Run
    from fairkit.runs.sweep import every_section

    nb = write_notebook(BODY, extra_params="fail_seed = -1\nrun_extra = False")
    assert every_section(nb, {"seed": "1"}) == {"run_extra": "True", "seed": "1"}
    assert every_section(nb, {"run_extra": "False"}) == {"run_extra": "False"}
    _fake_run(tmp_path, "run-a", 0, 1.0)  # a sweep's run, switches on (not in its params here)
    reader = Run("03_spare", {"mode": "quick", "seed": 1, "run_extra": False},
                 tmp_path.parent / "elsewhere", "cpu", settings("quick"))  # fmt: skip
    assert list(reader.sweep_table("metrics", root=tmp_path)["value"]) == [1.0]


def test_a_run_reads_another_settings_sweep_by_naming_the_parameters_that_differ(tmp_path):
    from fairkit.config import settings
    from fairkit.runs import Run

    _fake_run(tmp_path, "run-a", 0, 1.0)
    _fake_run(tmp_path, "run-b", 1, 2.0, mode="smoke")
    reader = Run("03_spare", {"mode": "quick", "seed": 1}, tmp_path.parent / "elsewhere", "cpu",
                 settings("quick"))  # fmt: skip
    assert list(reader.sweep_table("metrics", root=tmp_path, mode="smoke")["value"]) == [2.0]
    with pytest.raises(KeyError, match="n_train"):
        reader.sweep_table("metrics", root=tmp_path, n_train=6000)


def _no_cluster(monkeypatch):
    module = sys.modules["fairkit.runs.sweep"]  # ``runs.sweep`` is the function
    monkeypatch.setattr(module, "_client", lambda *a: pytest.fail("a cluster was started"))


def test_no_grid_is_refused():
    with pytest.raises(runs.ParameterError, match="no grid: give at least one -g NAME=V1,V2"):
        runs.parse_grid([])


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        (["seed=1,1"], r"repeats the point \{'seed': 1\}"),
        (["seed=1", "level=2,2.0"], r"repeats the point \{.*'level': 2"),
    ],
)
def test_a_grid_that_repeats_a_point_is_refused(
    write_notebook, tmp_path, monkeypatch, specs, message
):
    _no_cluster(monkeypatch)
    nb = write_notebook(BODY, extra_params="fail_seed = -1\nlevel = 0.0")
    with pytest.raises(runs.ParameterError, match=message):
        runs.sweep(nb, runs.parse_grid(specs), runs_root=tmp_path / "runs")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"workers": 0}, r"--workers must be in \[1, "),
        ({"workers": -2}, r"--workers must be in \[1, "),
        ({"workers": 10**6}, r"--workers must be in \[1, "),
        ({"workers": 1, "scheduler": "tcp://localhost:1"}, "--workers is for a local cluster"),
    ],
)
def test_bad_worker_counts_are_refused(write_notebook, tmp_path, monkeypatch, options, message):
    _no_cluster(monkeypatch)
    nb = write_notebook(BODY, extra_params="fail_seed = -1\nlevel = 0")
    with pytest.raises(runs.ParameterError, match=message):
        runs.sweep(nb, runs.parse_grid(["seed=0"]), runs_root=tmp_path / "runs", **options)


@pytest.mark.parametrize(
    "args", [[], ["-g", "seed=0", "--workers", "0"], ["-g", "seed=1,1"]], ids=str
)
def test_cli_sweep_refuses_in_one_line(write_notebook, tmp_path, monkeypatch, capsys, args):
    from fairkit.__main__ import main

    _no_cluster(monkeypatch)
    nb = write_notebook(BODY, extra_params="fail_seed = -1\nlevel = 0")
    code = main(["sweep", str(nb), "--runs-root", str(tmp_path / "runs"), *args])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
