"""The runner: run folders, failed and interrupted runs, the command line and its refusals."""

import errno
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from fairkit import runs
from fairkit.__main__ import main
from fairkit.io import write_atomic, write_json
from fairkit.runs import runner

from ..conftest import ROOT

QUICKSTART = ROOT / "notebooks" / "00_quickstart.py"


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
    chapter_dir = tmp_path / "runs" / "99_toy"
    assert _leftovers(chapter_dir) == [] and list(chapter_dir.glob("*.failed.ipynb"))


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


def _fake_papermill(monkeypatch, then):
    """Replace papermill's execution by one that writes the output notebook, then calls ``then``."""
    import papermill

    def execute(nb, output, **kwargs):
        Path(output).write_text("{}")
        then()

    monkeypatch.setattr(papermill, "execute_notebook", execute)


def _leftovers(chapter_dir):
    return sorted(p.name for p in chapter_dir.iterdir() if not p.name.endswith(".failed.ipynb"))


def test_interrupted_run_says_in_one_line_where_its_notebook_is(
    write_notebook, tmp_path, monkeypatch
):
    def ctrl_c():
        raise KeyboardInterrupt

    _fake_papermill(monkeypatch, ctrl_c)
    with pytest.raises(KeyboardInterrupt) as caught:
        runs.run_notebook(write_notebook("run.finish()"), runs_root=tmp_path / "runs")
    chapter_dir = tmp_path / "runs" / "99_toy"
    [failed] = chapter_dir.glob("*.failed.ipynb")
    assert str(failed) in str(caught.value) and "\n" not in str(caught.value)
    assert caught.value.__suppress_context__  # one traceback, not two
    assert _leftovers(chapter_dir) == []


def test_sigterm_during_a_run_is_handled_like_ctrl_c(write_notebook, tmp_path, monkeypatch):
    def unhandled(signum, frame):
        raise AssertionError("the runner left SIGTERM to the default handler")

    previous = signal.signal(signal.SIGTERM, unhandled)
    try:
        _fake_papermill(monkeypatch, lambda: (os.kill(os.getpid(), signal.SIGTERM), time.sleep(5)))
        with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
            runs.run_notebook(write_notebook("run.finish()"), runs_root=tmp_path / "runs")
        assert signal.getsignal(signal.SIGTERM) is unhandled  # the runner's handler is gone
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert _leftovers(tmp_path / "runs" / "99_toy") == []


def _claim_and_exit(partial):
    runner._claim(partial)
    partial.mkdir()


def test_partial_folder_of_a_dead_run_is_removed_by_the_next_run(write_notebook, tmp_path):
    chapter_dir = tmp_path / "runs" / "99_toy"
    chapter_dir.mkdir(parents=True)
    dead = multiprocessing.get_context("fork").Process(
        target=_claim_and_exit, args=(chapter_dir / ".dead.partial",)
    )
    dead.start()
    dead.join()
    assert dead.exitcode == 0 and (chapter_dir / ".dead.partial").is_dir()
    run_dir = runs.run_notebook(write_notebook("run.finish()"), runs_root=tmp_path / "runs")
    assert [p.name for p in chapter_dir.iterdir()] == [run_dir.name]


def test_partial_folder_without_an_owner_is_removed_by_the_next_run(write_notebook, tmp_path):
    chapter_dir = tmp_path / "runs" / "99_toy"
    (chapter_dir / ".old.partial").mkdir(parents=True)  # left by a runner before owner files
    run_dir = runs.run_notebook(write_notebook("run.finish()"), runs_root=tmp_path / "runs")
    assert [p.name for p in chapter_dir.iterdir()] == [run_dir.name]


def test_partial_folder_of_a_live_run_is_kept(write_notebook, tmp_path):
    chapter_dir = tmp_path / "runs" / "99_toy"
    chapter_dir.mkdir(parents=True)
    _claim_and_exit(chapter_dir / ".live.partial")  # this process: alive
    run_dir = runs.run_notebook(write_notebook("run.finish()"), runs_root=tmp_path / "runs")
    assert {p.name for p in chapter_dir.iterdir()} == {
        run_dir.name,
        ".live.partial",
        ".live.partial.owner",
    }


def _start_sleeping_run(write_notebook, runs_root):
    """Start ``python -m fairkit run`` on a chapter that sleeps; return it and its kernel's pid."""
    nb = write_notebook(
        "import os, pathlib, time\n"
        "pathlib.Path('kernel.pid').write_text(str(os.getpid()))\n"
        "time.sleep(300)\nrun.finish()"
    )
    cli = [sys.executable, "-m", "fairkit", "run", str(nb), "--runs-root", str(runs_root)]
    proc = subprocess.Popen(cli, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (pid_files := list(runs_root.glob("99_toy/.*.partial/kernel.pid"))):
        assert proc.poll() is None and time.monotonic() < deadline, "the run never started"
        time.sleep(0.2)
    time.sleep(0.2)  # the pid is written
    return proc, int(pid_files[0].read_text())


def _gone(pid, wait_s=15):
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow
def test_sigterm_leaves_no_partial_folder_and_no_kernel(write_notebook, tmp_path):
    proc, kernel = _start_sleeping_run(write_notebook, tmp_path / "runs")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    chapter_dir = tmp_path / "runs" / "99_toy"
    [failed] = chapter_dir.glob("*.failed.ipynb")
    assert proc.returncode != 0 and failed.name in err
    assert _leftovers(chapter_dir) == []
    assert _gone(kernel)


@pytest.mark.slow
def test_run_after_a_sigkilled_run_removes_its_partial_folder(write_notebook, tmp_path):
    proc, kernel = _start_sleeping_run(write_notebook, tmp_path / "runs")
    proc.kill()
    proc.wait(timeout=60)
    chapter_dir = tmp_path / "runs" / "99_toy"
    assert list(chapter_dir.glob(".*.partial"))  # nothing can clean up after SIGKILL
    run_dir = runs.run_notebook(write_notebook("run.finish()"), runs_root=tmp_path / "runs")
    assert [p.name for p in chapter_dir.iterdir()] == [run_dir.name]
    assert _gone(kernel)  # the kernel notices its parent died


def _cli_run(capsys, notebook, runs_root, *args):
    code = main(["run", str(notebook), "--runs-root", str(runs_root), *args])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def _error_lines(err):
    return [line for line in err.splitlines() if line.startswith("error:")]


def test_cli_prints_the_cells_error_its_section_and_the_kept_notebook(
    write_notebook, tmp_path, capsys
):
    nb = write_notebook(
        "x = 1\n# %% [markdown]\n# ## Loading the data\n# %%\nraise ValueError('no rows left')"
    )
    code, err = _cli_run(capsys, nb, tmp_path / "runs")
    [failed] = (tmp_path / "runs" / "99_toy").glob("*.failed.ipynb")
    [line] = _error_lines(err)
    assert code == 2
    assert "ValueError: no rows left" in line and "'Loading the data'" in line
    assert str(failed) in line


def test_provenance_that_cannot_be_written_keeps_the_executed_notebook(
    write_notebook, tmp_path, monkeypatch, capsys
):
    def disk_full(path, data):
        if Path(path).name == "provenance.json":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return write_json(path, data)

    monkeypatch.setattr(runner, "write_json", disk_full)
    code, err = _cli_run(capsys, write_notebook("run.finish()"), tmp_path / "runs")
    chapter_dir = tmp_path / "runs" / "99_toy"
    [failed] = chapter_dir.glob("*.failed.ipynb")
    [line] = _error_lines(err)
    assert code == 2 and "No space left on device" in line and str(failed) in line
    json.loads(failed.read_text())  # the whole executed notebook
    assert _leftovers(chapter_dir) == []


def test_disk_full_at_the_start_names_the_folder_and_starts_no_kernel(
    write_notebook, tmp_path, monkeypatch, capsys
):
    def disk_full(path, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(runner, "write_json", disk_full)
    _fake_papermill(monkeypatch, lambda: pytest.fail("a kernel was started"))
    code, err = _cli_run(capsys, write_notebook("run.finish()"), tmp_path / "runs")
    [line] = _error_lines(err)
    assert code == 2 and "No space left on device" in line
    assert str(tmp_path / "runs" / "99_toy") in line
    assert list((tmp_path / "runs" / "99_toy").iterdir()) == []


def test_notebook_cut_short_by_a_full_disk_is_not_kept(write_notebook, tmp_path, monkeypatch):
    import papermill

    def execute(nb, output, **kwargs):
        Path(output).write_text('{"cells": [{"cell_type": "code", "sour')
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), output)

    monkeypatch.setattr(papermill, "execute_notebook", execute)
    with pytest.raises(runs.RunFailed, match="No space left on device") as caught:
        runs.run_notebook(write_notebook("run.finish()"), runs_root=tmp_path / "runs")
    chapter_dir = tmp_path / "runs" / "99_toy"
    assert str(chapter_dir) in str(caught.value) and "cut short" in str(caught.value)
    assert list(chapter_dir.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_runs_root_is_refused_naming_it(write_notebook, tmp_path, capsys):
    root = tmp_path / "runs"
    root.mkdir(mode=0o555)
    code, err = _cli_run(capsys, write_notebook("run.finish()"), root)
    [line] = _error_lines(err)
    assert code == 2 and str(root) in line and "Permission denied" in line
    assert list(root.iterdir()) == []


def test_a_run_folder_that_cannot_be_made_is_refused_naming_it(
    write_notebook, tmp_path, monkeypatch, capsys
):
    def read_only(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(runner, "_claim", read_only)  # the owner file: the run's first write
    code, err = _cli_run(capsys, write_notebook("run.finish()"), tmp_path / "runs")
    [line] = _error_lines(err)
    assert code == 2 and str(tmp_path / "runs" / "99_toy") in line and "Permission denied" in line


def test_runs_root_that_is_a_file_is_refused(write_notebook, tmp_path, capsys):
    (tmp_path / "runs").write_text("")
    code, err = _cli_run(capsys, write_notebook("run.finish()"), tmp_path / "runs")
    assert code == 2 and f"runs root {tmp_path / 'runs'} is not a folder" in err


@pytest.mark.parametrize(
    ("name", "source", "message"),
    [
        ("notes.txt", "mode = 'quick'\n", "not a notebook"),
        ("99_toy.py", '# %% tags=["parameters"]\nmode = "quick" +\n', "does not parse"),
    ],
)
def test_cli_refuses_a_file_that_is_not_a_chapter_in_one_line(
    tmp_path, capsys, name, source, message
):
    path = tmp_path / name
    path.write_text(source)
    code, err = _cli_run(capsys, path, tmp_path / "runs")
    assert code == 2 and len(err.strip().splitlines()) == 1 and name in err and message in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-p", "dark_fraction", "abc"], "'dark_fraction' expects float"),
        (["-p", "seed", "1", "-p", "seed", "2"], "parameter 'seed' was given twice"),
    ],
)
def test_cli_refuses_bad_parameters_in_one_line(tmp_path, capsys, args, message):
    code, err = _cli_run(capsys, QUICKSTART, tmp_path / "runs", *args)
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err


def test_cli_refuses_a_folder_given_as_the_notebook(tmp_path, capsys):
    code, err = _cli_run(capsys, tmp_path, tmp_path / "runs")
    assert code == 2 and f"notebook {tmp_path} is not a file" in err
