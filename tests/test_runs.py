import json

import pandas as pd
import pytest

from fairkit import runs
from fairkit.__main__ import main
from fairkit.io import write_atomic

from .conftest import ROOT

QUICKSTART = ROOT / "notebooks" / "00_quickstart.py"


def test_parameters_are_read_from_the_parameters_cell():
    params = runs.notebook_parameters(QUICKSTART)
    assert params == {"mode": "quick", "seed": 0, "device": "auto", "dark_fraction": 0.15}


def test_unknown_parameter_is_refused_with_the_allowed_names():
    with pytest.raises(runs.ParameterError, match="allowed: mode, seed, device, dark_fraction"):
        runs.resolve_parameters(QUICKSTART, {"no_such_param": 1})


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [("seed", "3", 3), ("dark_fraction", "1", 1.0), ("mode", "smoke", "smoke")],
)
def test_cli_values_take_the_type_of_the_default(name, raw, expected):
    params = runs.resolve_parameters(QUICKSTART, {name: raw}, from_cli=True)
    assert params[name] == expected and type(params[name]) is type(expected)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"seed": "abc"}, "'seed' expects int"),
        ({"mode": "fast"}, "mode must be one of"),
        ({"device": "gpu"}, "device must be"),
        ({"dark_fraction": "lots"}, "'dark_fraction' expects float"),
    ],
)
def test_bad_values_are_refused(overrides, message):
    with pytest.raises(runs.ParameterError, match=message):
        runs.resolve_parameters(QUICKSTART, overrides, from_cli=True)


def test_python_values_of_the_wrong_type_are_refused():
    with pytest.raises(runs.ParameterError, match="expects int"):
        runs.resolve_parameters(QUICKSTART, {"seed": 1.5})


def test_cli_fails_at_once_naming_allowed_parameters(capsys, tmp_path):
    code = main(["run", str(QUICKSTART), "-p", "no_such_param", "1", "--runs-root", str(tmp_path)])
    assert code == 2
    assert "allowed: mode, seed, device, dark_fraction" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_run_folder_holds_notebook_params_provenance_and_tables(write_notebook, tmp_path):
    nb = write_notebook(
        "import pandas as pd\nrun.banner()\n"
        "run.save_table(pd.DataFrame({'x': [seed]}), 'metrics')\nrun.finish()"
    )
    run_dir = runs.run_notebook(nb, {"seed": 7}, runs_root=tmp_path / "runs")
    assert run_dir.parent == tmp_path / "runs" / "99_toy"
    assert {p.name for p in run_dir.iterdir()} == {
        "notebook.ipynb",
        "params.json",
        "provenance.json",
        "metrics.csv",
    }
    assert json.loads((run_dir / "params.json").read_text())["seed"] == 7
    provenance = json.loads((run_dir / "provenance.json").read_text())
    assert provenance["seed"] == 7 and provenance["device"] == "cpu"
    assert provenance["run_id"] == run_dir.name
    assert provenance["versions"]["torch"].startswith("2.14")
    assert provenance["runner_wall_time_s"] >= provenance["wall_time_s"] > 0
    assert pd.read_csv(run_dir / "metrics.csv")["x"].tolist() == [7]
    assert not list(run_dir.parent.glob(".*partial"))


def test_failed_run_leaves_no_run_folder_and_no_metrics(write_notebook, tmp_path):
    nb = write_notebook(
        "import pandas as pd\nrun.save_table(pd.DataFrame({'x': [1]}), 'metrics')\n"
        "raise RuntimeError('boom')"
    )
    with pytest.raises(runs.RunFailed, match="failed"):
        runs.run_notebook(nb, runs_root=tmp_path / "runs")
    chapter_dir = tmp_path / "runs" / "99_toy"
    assert not list(chapter_dir.rglob("metrics.csv"))
    assert [p.name.endswith(".failed.ipynb") for p in chapter_dir.iterdir()] == [True]


def test_run_that_forgets_finish_is_refused(write_notebook, tmp_path):
    nb = write_notebook("x = 1")
    with pytest.raises(runs.RunFailed, match="finish"):
        runs.run_notebook(nb, runs_root=tmp_path / "runs")
    assert not any((tmp_path / "runs" / "99_toy").iterdir())


def test_atomic_write_that_fails_leaves_nothing(tmp_path):
    target = tmp_path / "metrics.csv"

    def half_write(tmp):
        tmp.write_text("y_true,y_pred\n1,")
        raise OSError("disk full")

    with pytest.raises(OSError):
        write_atomic(target, half_write)
    assert list(tmp_path.iterdir()) == []


def test_parameter_cells_are_hidden_in_the_executed_notebook(write_notebook, tmp_path):
    import nbformat

    run_dir = runs.run_notebook(write_notebook("run.finish()"), runs_root=tmp_path / "runs")
    nb = nbformat.read(run_dir / "notebook.ipynb", as_version=4)
    tagged = [c.metadata.tags for c in nb.cells if "parameters" in str(c.metadata.get("tags"))]
    assert len(tagged) == 2 and all("remove-cell" in tags for tags in tagged)


def test_toc_lists_the_quickstart_chapter():
    assert runs.toc_chapters(ROOT)[0] == "00_quickstart"


def _quickstart_metrics(tmp_path, seed):
    run_dir = runs.run_notebook(
        QUICKSTART, {"mode": "smoke", "seed": seed}, runs_root=tmp_path / "runs"
    )
    return pd.read_csv(run_dir / "metrics.csv")


@pytest.mark.slow
def test_quickstart_same_seed_same_numbers_other_seed_other_numbers(tmp_path):
    first, again = _quickstart_metrics(tmp_path, 0), _quickstart_metrics(tmp_path, 0)
    other = _quickstart_metrics(tmp_path, 1)
    pd.testing.assert_frame_equal(first, again)
    assert not first["value"].equals(other["value"])


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
