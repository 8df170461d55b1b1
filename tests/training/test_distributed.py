"""The one loop on two processes (CPU, gloo): accelerate shards the batches, DDP syncs weights."""

import json
import subprocess
import sys
import textwrap

import pytest
import torch

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from dataclasses import replace
    from pathlib import Path

    import torch
    from accelerate import PartialState

    from fairkit.data import synth
    from fairkit.models.classifier import backbone
    from fairkit.training import TrainConfig, fit

    out = Path(sys.argv[1])
    splits = synth.make_splits("mri", seed=0, image_size=16, n_train=192, n_val=64, n_test=64)
    config = TrainConfig(epochs=2, batch_size=32, progress=False, group_column="age_group")
    for objective in ("erm", "groupdro"):
        model = backbone("small_cnn", in_channels=1, n_classes=2, image_size=16, width=4, seed=0)
        result = fit(model, splits["train"], config=replace(config, objective=objective), val=splits["val"])
        state = PartialState()  # the state fit() set up, as accelerate launched it
        rank, processes = state.process_index, state.num_processes
        torch.save(result.model.state_dict(), out / f"{objective}-{rank}.pt")
        record = {"processes": processes, "loss": result.history["train_loss"].tolist()}
        (out / f"{objective}-{rank}.json").write_text(json.dumps(record))
    """
)


@pytest.mark.slow
def test_two_processes_see_different_batches_and_end_with_the_same_weights(tmp_path):
    (tmp_path / "fit.py").write_text(SCRIPT)
    subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(tmp_path / "fit.py"), str(tmp_path)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    for objective in ("erm", "groupdro"):
        records = [json.loads((tmp_path / f"{objective}-{r}.json").read_text()) for r in (0, 1)]
        weights = [torch.load(tmp_path / f"{objective}-{r}.pt", weights_only=True) for r in (0, 1)]
        assert [r["processes"] for r in records] == [2, 2]
        assert records[0]["loss"] != records[1]["loss"]  # each process trained on its own shard
        assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0]), objective
