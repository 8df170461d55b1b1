"""The summary's cost table reads every kept run's wall time and names its non-default setting."""

import json

import pandas as pd

from fairkit import claims
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


def test_a_backbones_sweep_is_labelled_with_the_backbones_it_trained(tmp_path):
    folder = tmp_path / "03_spare" / "r0"
    folder.mkdir(parents=True)
    record = {"mode": "quick", "device_name": "cpu", "parameters": {},
              "settings": {"image_size": 32, "n_train": 2000, "backbone": "small_cnn",
                           "backbone_width": 8}}  # fmt: skip
    (folder / "provenance.json").write_text(json.dumps(record))
    kept = pd.DataFrame({"run_id": ["r0"], "seed": [0]})
    swept = summary.sweep_scale(tmp_path, "03_spare", kept, {"backbones": ["resnet18", "vgg11"]})
    assert ", resnet18 and vgg11 at width 8, 1 seeds," in swept and "small_cnn" not in swept
    assert "small_cnn" in summary.sweep_scale(tmp_path, "03_spare", kept, {})


def test_without_kept_sweeps_every_claim_is_listed_as_not_pooled(tmp_path):
    kept = summary.judge_kept_sweeps("quick", root=tmp_path)
    assert kept.judged.empty and len(kept.summary) == len(claims.CLAIMS)
    assert all("not pooled" in line for line in kept.sources)
    assert len(kept.sources) == len({claim.source for claim in claims.CLAIMS})
