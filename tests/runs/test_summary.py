"""The summary's cost table reads every kept run's wall time and names its non-default setting."""

import json

from fairkit.runs import summary
from fairkit.runs.kernel import REPO_ROOT
from fairkit.runs.parameters import notebook_parameters


def keep(root, chapter, run_id, params, wall_time_s):
    folder = root / chapter / run_id
    folder.mkdir(parents=True)
    (folder / "params.json").write_text(json.dumps(params))
    record = {"mode": params["mode"], "wall_time_s": wall_time_s, "device": "cpu",
              "device_name": "x86_64 CPU, 2 threads"}  # fmt: skip
    (folder / "provenance.json").write_text(json.dumps(record))


def test_seed_costs_reads_each_kept_run(tmp_path):
    defaults = notebook_parameters(REPO_ROOT / "notebooks" / "03_spare.py")
    keep(tmp_path, "03_spare", "a", defaults | {"seed": 0, "run_ablation": True}, 300.0)
    keep(tmp_path, "03_spare", "b", defaults | {"seed": 1, "backbones": ["vgg11"]}, 600.0)
    (tmp_path / "03_spare" / ".c.partial").mkdir()  # an unfinished run is not read
    costs = summary.seed_costs(tmp_path).sort_values("seed")
    assert costs["minutes"].tolist() == [5.0, 10.0]
    assert costs["setting"].tolist() == ["", "backbones=['vgg11']"]  # seeds and switches aside
    assert set(costs["chapter"]) == {"03_spare"} and set(costs["mode"]) == {"quick"}


def test_seed_costs_of_no_kept_runs_is_empty(tmp_path):
    assert summary.seed_costs(tmp_path).empty
