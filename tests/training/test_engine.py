import math

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from fairkit.data import Cohort
from fairkit.training import TrainConfig, engine


def rates(make, steps):
    parameter = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([parameter], lr=3e-3)
    schedule = make(optimizer)
    out = []
    for _ in range(steps):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return out


@pytest.mark.parametrize(("total", "warmup"), [(1, 1), (10, 1), (12, 3), (250, 25), (3000, 300)])
def test_warmup_cosine_follows_its_closed_form(total, warmup):
    def factor(step):
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    found = rates(lambda o: engine.warmup_cosine(o, total_steps=total, warmup_steps=warmup), total)
    expected = [3e-3 * factor(step) for step in range(total)]
    assert found == pytest.approx(expected, rel=1e-14, abs=0)


def test_warmup_constant_rises_then_stays():
    found = rates(lambda o: engine.warmup_constant(o, warmup_steps=100), 300)
    expected = [3e-3 * min(1.0, (step + 1) / 100) for step in range(300)]
    assert found == pytest.approx(expected, rel=1e-14, abs=0)
    with pytest.raises(ValueError, match="warmup_steps must be at least 1"):
        engine.warmup_constant(torch.optim.SGD([nn.Parameter(torch.zeros(1))]), warmup_steps=0)


def linear_run():
    """A seeded linear model, its optimizer and schedule: the smallest thing a loop resumes."""
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    return model, optimizer, engine.warmup_cosine(optimizer, total_steps=20, warmup_steps=2)


def test_a_checkpoint_restores_model_optimizer_schedule_and_extras(tmp_path):
    def step(model, optimizer, schedule):
        optimizer.zero_grad()
        model(torch.ones(3, 4)).square().sum().backward()
        optimizer.step()
        schedule.step()

    model, optimizer, schedule = linear_run()
    path = engine.last_checkpoint(tmp_path)
    assert engine.last_checkpoint(None) is None
    assert engine.resume(path, model, optimizer, schedule, identity={"seed": "0"}) is None
    for _ in range(3):
        step(model, optimizer, schedule)
    extra = torch.arange(3.0)
    engine.save_training_state(
        path,
        model,
        optimizer,
        schedule,
        identity={"seed": "0"},
        tensors={"extra": extra},
        metadata={"n": "3"},
    )
    step(model, optimizer, schedule)
    again = linear_run()
    tensors, metadata = engine.resume(path, *again, identity={"seed": "0"})
    assert torch.equal(tensors["extra"], extra) and metadata["n"] == "3"
    step(*again)
    assert again[2].get_last_lr() == schedule.get_last_lr()
    for a, b in zip(model.parameters(), again[0].parameters(), strict=True):
        assert torch.equal(a, b)


def test_identity_counts_what_changes_the_numbers_and_nothing_else():
    model = nn.Linear(4, 2)
    images = np.zeros((4, 1, 2, 2), np.uint8)
    cohort = Cohort(images, pd.DataFrame({"label": [0, 1, 0, 1]}), "mri", ("a", "b"))
    base = engine.run_identity(TrainConfig(), model, train=cohort)
    same = engine.run_identity(
        TrainConfig(progress=False, checkpoint_dir="elsewhere", device="cuda", resume="overwrite"),
        nn.Linear(4, 2),
        train=Cohort(images.copy(), cohort.meta.copy(), "mri", ("a", "b")),
    )
    assert same == base
    pixel = images.copy()
    pixel[2, 0, 1, 1] = 1
    label = cohort.meta.assign(label=[0, 1, 1, 1])
    for changed in (
        engine.run_identity(TrainConfig(seed=1), model, train=cohort),
        engine.run_identity(TrainConfig(lr=1e-3), model, train=cohort),
        engine.run_identity(TrainConfig(), nn.Linear(4, 3), train=cohort),
        engine.run_identity(
            TrainConfig(), model, train=Cohort(pixel, cohort.meta, "mri", ("a", "b"))
        ),
        engine.run_identity(TrainConfig(), model, train=Cohort(images, label, "mri", ("a", "b"))),
    ):
        assert changed != base


def test_resume_refuses_a_checkpoint_of_another_run_and_names_each_difference(tmp_path):
    path = engine.last_checkpoint(tmp_path)
    run = linear_run()
    engine.save_training_state(path, *run, identity={"seed": "0", "epochs": "3", "lr": "0.01"})
    now = {"seed": "1", "epochs": "5", "lr": "0.01"}
    with pytest.raises(ValueError, match="another run") as refused:
        engine.resume(path, *linear_run(), identity=now)
    message = str(refused.value)
    assert "seed: stored 0, now 1" in message and "epochs: stored 3, now 5" in message
    assert "lr" not in message and str(tmp_path) in message and "resume='overwrite'" in message


def test_identity_checks_refuse_metadata_that_names_no_run(tmp_path):
    path = engine.last_checkpoint(tmp_path)
    with pytest.raises(ValueError, match="predates identity checks") as refused:
        engine.check_identity(path, {"scheduler": "{}"}, {"seed": "0"})
    assert str(tmp_path) in str(refused.value)


def test_a_truncated_checkpoint_gives_one_clear_error_naming_the_file(tmp_path):
    path = engine.last_checkpoint(tmp_path)
    engine.save_training_state(path, *linear_run(), identity={"seed": "0"})
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated or corrupt") as refused:
        engine.resume(path, *linear_run(), identity={"seed": "0"})
    assert str(path) in str(refused.value) and "resume='overwrite'" in str(refused.value)
    assert refused.value.__cause__ is None and refused.value.__suppress_context__


def test_overwrite_discards_the_checkpoint_and_starts_afresh(tmp_path):
    path = engine.last_checkpoint(tmp_path)
    engine.save_training_state(path, *linear_run(), identity={"seed": "0"})
    fresh = linear_run()
    assert engine.resume(path, *fresh, identity={"seed": "1"}, mode="overwrite") is None
    assert not path.exists()
    with pytest.raises(ValueError, match="resume must be one of"):
        engine.resume(path, *fresh, identity={"seed": "1"}, mode="ignore")


def flip_tensor_bytes(path, offsets=(0, 5, 9)):
    """Flip bytes in the tensor data of a safetensors file (past its 8-byte length and header)."""
    data = bytearray(path.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")
    for offset in offsets:
        data[start + offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_flipped_bytes_in_a_checkpoints_tensors_are_refused_as_corrupt(tmp_path):
    path = engine.last_checkpoint(tmp_path)
    engine.save_training_state(path, *linear_run(), identity={"seed": "0"})
    flip_tensor_bytes(path)
    with pytest.raises(ValueError, match="is corrupt") as refused:
        engine.resume(path, *linear_run(), identity={"seed": "0"})
    assert str(path) in str(refused.value) and f"delete {tmp_path}" in str(refused.value)


def test_a_changed_metadata_value_is_refused_as_corrupt(tmp_path):
    path = engine.last_checkpoint(tmp_path)
    engine.save_training_state(path, *linear_run(), identity={"seed": "0"}, metadata={"n": "3"})
    data = path.read_bytes()
    assert data.count(b'"n":"3"') == 1
    path.write_bytes(data.replace(b'"n":"3"', b'"n":"4"'))
    with pytest.raises(ValueError, match="is corrupt") as refused:
        engine.resume(path, *linear_run(), identity={"seed": "0"})
    assert str(path) in str(refused.value)


def test_a_checkpoint_without_a_content_hash_is_refused(tmp_path):
    path = engine.last_checkpoint(tmp_path)
    engine.save_training_state(path, *linear_run(), identity={"seed": "0"})
    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as handle:
        metadata = {k: v for k, v in handle.metadata().items() if "sha256" not in k}
    save_file(tensors, str(path), metadata=metadata)  # identity, as written before checksums
    with pytest.raises(ValueError, match="no content hash") as refused:
        engine.resume(path, *linear_run(), identity={"seed": "0"})
    assert str(path) in str(refused.value) and "resume='overwrite'" in str(refused.value)
    save_file(tensors, str(path))  # nor identity: older still
    with pytest.raises(ValueError, match="no content hash"):
        engine.resume(path, *linear_run(), identity={"seed": "0"})


def test_a_checkpoint_under_another_name_is_refused(tmp_path):
    path = engine.last_checkpoint(tmp_path)
    other = tmp_path / "best.safetensors"
    engine.write_checkpoint(other, {"w": torch.ones(2)}, identity={"seed": "0"})
    other.rename(path)
    with pytest.raises(ValueError, match="written as best.safetensors") as refused:
        engine.resume(path, *linear_run(), identity={"seed": "0"})
    assert str(path) in str(refused.value)


def test_load_checkpoint_checks_identity_and_content_in_one_place(tmp_path):
    path = tmp_path / "best.safetensors"
    engine.write_checkpoint(path, {"w": torch.arange(4.0)}, identity={"seed": "0"})
    tensors, _ = engine.load_checkpoint(path, {"seed": "0"})
    assert torch.equal(tensors["w"], torch.arange(4.0))
    with pytest.raises(ValueError, match="another run.*seed: stored 0, now 1"):
        engine.load_checkpoint(path, {"seed": "1"})


@pytest.mark.parametrize(
    "content", [b"", b"not a safetensors file", (10**12).to_bytes(8, "little") + b"{}"]
)
def test_a_file_that_is_not_a_checkpoint_gives_one_clear_error(tmp_path, content):
    path = engine.last_checkpoint(tmp_path)
    path.write_bytes(content)
    with pytest.raises(ValueError, match="truncated or corrupt") as refused:
        engine.resume(path, *linear_run(), identity={"seed": "0"})
    assert str(path) in str(refused.value)


def test_a_checkpoint_dir_that_is_a_file_is_refused(tmp_path):
    file = tmp_path / "taken"
    file.write_text("")
    for where in (file, file / "below"):
        with pytest.raises(NotADirectoryError, match="expected a folder") as refused:
            engine.last_checkpoint(where)
        assert str(where) in str(refused.value) and "\n" not in str(refused.value)
