import math

import pytest
import torch
from torch import nn

from fairkit.training import engine


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


def test_a_checkpoint_restores_model_optimizer_schedule_and_extras(tmp_path):
    def make():
        torch.manual_seed(0)
        model = nn.Linear(4, 2)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        return model, optimizer, engine.warmup_cosine(optimizer, total_steps=20, warmup_steps=2)

    def step(model, optimizer, schedule):
        optimizer.zero_grad()
        model(torch.ones(3, 4)).square().sum().backward()
        optimizer.step()
        schedule.step()

    model, optimizer, schedule = make()
    path = engine.last_checkpoint(tmp_path)
    assert engine.last_checkpoint(None) is None
    assert engine.resume(path, model, optimizer, schedule) is None
    for _ in range(3):
        step(model, optimizer, schedule)
    extra = torch.arange(3.0)
    engine.save_training_state(
        path, model, optimizer, schedule, tensors={"extra": extra}, metadata={"n": "3"}
    )
    step(model, optimizer, schedule)
    again = make()
    tensors, metadata = engine.resume(path, *again)
    assert torch.equal(tensors["extra"], extra) and metadata["n"] == "3"
    step(*again)
    assert again[2].get_last_lr() == schedule.get_last_lr()
    for a, b in zip(model.parameters(), again[0].parameters(), strict=True):
        assert torch.equal(a, b)
