import copy
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

from fairkit.models.diffusion import to_model_range
from fairkit.training import last_checkpoint, preference, read_checkpoint
from fairkit.training.preference import (
    PreferenceConfig,
    dpo_loss,
    frozen_copy,
    pair_errors,
    preference_accuracy,
    train_preference,
)


@pytest.fixture()
def pairs(skin16, tiny_unet):
    """A tiny model, its frozen copy as reference, and four pairs sharing noise and timestep."""
    model = tiny_unet()
    reference = copy.deepcopy(model).requires_grad_(False)
    x = to_model_range(skin16.images[:8])
    codes = model.conditions.codes(skin16.meta.iloc[:4])
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(4, 3, 16, 16, generator=generator)
    t = torch.randint(1000, (4,), generator=generator)
    scheduler = DDPMScheduler(**model.noise_schedule)
    return model, reference, x[:4], x[4:], codes, noise, t, scheduler


def _loss(model, reference, x_w, x_l, codes, noise, t, scheduler, beta=50.0):
    model_w, model_l = pair_errors(model, x_w, x_l, codes, noise, t, scheduler=scheduler)
    with torch.no_grad():
        ref_w, ref_l = pair_errors(reference, x_w, x_l, codes, noise, t, scheduler=scheduler)
    return dpo_loss(model_w, model_l, ref_w, ref_l, beta=beta)


def _gradient(model, loss):
    model.zero_grad()
    loss.backward()
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def test_the_loss_is_log_2_when_model_and_reference_are_the_same_network(pairs):
    assert _loss(*pairs).item() == pytest.approx(math.log(2), abs=1e-6)


def test_a_pair_of_one_image_gives_no_gradient(pairs):
    model, reference, x_w, x_l, codes, noise, t, scheduler = pairs
    same = _gradient(model, _loss(model, reference, x_w, x_w, codes, noise, t, scheduler))
    other = _gradient(model, _loss(model, reference, x_w, x_l, codes, noise, t, scheduler))
    assert same.abs().max() < 1e-4 * other.abs().max()  # zero up to float summation order


def test_swapping_winner_and_loser_flips_the_gradient(pairs):
    model, reference, x_w, x_l, codes, noise, t, scheduler = pairs
    forward = _gradient(model, _loss(model, reference, x_w, x_l, codes, noise, t, scheduler))
    swapped = _gradient(model, _loss(model, reference, x_l, x_w, codes, noise, t, scheduler))
    assert forward.abs().max() > 0
    torch.testing.assert_close(swapped, -forward, rtol=0, atol=1e-4 * forward.abs().max().item())


def test_the_loss_averages_pairs_not_the_batch_margin():
    model_w, model_l = torch.tensor([0.0, 0.4]), torch.tensor([0.2, 0.0])
    ref = torch.zeros(2)
    per_pair = dpo_loss(model_w, model_l, ref, ref, beta=20.0)
    margins = -0.5 * 20.0 * (model_w - model_l)
    assert per_pair.item() == pytest.approx(-F.logsigmoid(margins).mean().item())
    batch_mean = -F.logsigmoid(margins.mean())  # the form the loss must not take
    assert abs(per_pair.item() - batch_mean.item()) > 0.1


def test_the_reference_free_form_drops_the_reference():
    model_w, model_l = torch.tensor([0.1, 0.3]), torch.tensor([0.2, 0.1])
    free = dpo_loss(model_w, model_l, beta=10.0, variant="reference_free")
    assert free.item() == pytest.approx(-F.logsigmoid(-5.0 * (model_w - model_l)).mean().item())
    with pytest.raises(ValueError, match="needs the reference"):
        dpo_loss(model_w, model_l, beta=10.0)
    with pytest.raises(ValueError, match="takes no reference"):
        dpo_loss(model_w, model_l, model_w, model_l, beta=10.0, variant="reference_free")
    with pytest.raises(ValueError, match="variant must be one of"):
        dpo_loss(model_w, model_l, beta=10.0, variant="ipo")
    with pytest.raises(ValueError, match="beta must be > 0"):
        dpo_loss(model_w, model_l, model_w, model_l, beta=0.0)


# --------------------------------------------------------------------------- the loop


@pytest.fixture(scope="module")
def separable(skin16):
    """Sixteen pairs whose winner is a skin image and whose loser is uniform noise."""
    n = 16
    losers = np.random.default_rng(0).integers(0, 256, (n, 3, 16, 16), dtype=np.uint8)
    images = np.concatenate([skin16.images[:n], losers])
    pairs = pd.DataFrame(
        {
            "pair_id": range(n),
            "winner": range(n),
            "loser": range(n, 2 * n),
            "winner_score": 1.0,
            "loser_score": 0.0,
            "rater": "test",
        }
    ).join(skin16.meta[["skin_group", "sex"]].iloc[:n].reset_index(drop=True))
    return pairs, images


def quick(**change):
    return PreferenceConfig(
        **{"steps": 4, "batch_pairs": 4, "warmup_steps": 2, "progress": False} | change
    )


def swapped(pairs):
    return pairs.assign(winner=pairs["loser"], loser=pairs["winner"])


def same_weights(a, b):
    return all(
        torch.equal(x, y)
        for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


def shifted(model):
    """The model with other starting weights: another reference."""
    with torch.no_grad():
        model.conditions.tables["sex"].weight.add_(1.0)
    return model


@pytest.fixture()
def copies(monkeypatch):
    """Record each reference ``train_preference`` builds, and its forward calls."""
    made, calls = [], []

    def recording(model):
        reference = frozen_copy(model)
        reference.register_forward_pre_hook(
            lambda module, args: calls.append((len(args[0]), torch.is_grad_enabled()))
        )
        made.append(reference)
        return reference

    monkeypatch.setattr(preference, "frozen_copy", recording)
    return made, calls


def test_resume_after_a_stop_gives_the_same_weights(separable, tiny_unet, tmp_path):
    pairs, images = separable
    config = quick(checkpoint_dir=str(tmp_path), checkpoint_every=2)
    whole, whole_history = train_preference(tiny_unet(), pairs, images, config=quick())
    stopped, calls = tiny_unet(), []

    def stop_in_step_three(module, args):
        if module.training:  # the reference, a copy in eval mode, carries this hook too
            calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt

    stopped.register_forward_pre_hook(stop_in_step_three)
    with pytest.raises(KeyboardInterrupt):
        train_preference(stopped, pairs, images, config=config)
    _, left = read_checkpoint(last_checkpoint(tmp_path))
    assert left["step"] == "2"
    resumed, history = train_preference(tiny_unet(), pairs, images, config=config)
    assert same_weights(whole, resumed)
    pd.testing.assert_frame_equal(history, whole_history)


def test_a_longer_run_resumes_from_a_shorter_ones_end(separable, tiny_unet, tmp_path):
    pairs, images = separable
    whole, whole_history = train_preference(tiny_unet(), pairs, images, config=quick(steps=4))
    shorter = quick(steps=1, checkpoint_dir=str(tmp_path))  # stopped inside the warm-up
    train_preference(tiny_unet(), pairs, images, config=shorter)
    longer, history = train_preference(tiny_unet(), pairs, images, config=replace(shorter, steps=4))
    assert same_weights(whole, longer)
    pd.testing.assert_frame_equal(history, whole_history)


def test_a_checkpoint_past_the_runs_steps_is_refused(separable, tiny_unet, tmp_path):
    pairs, images = separable
    config = quick(steps=3, checkpoint_dir=str(tmp_path))
    train_preference(tiny_unet(), pairs, images, config=config)
    with pytest.raises(ValueError, match="at step 3, past this run's 2 steps"):
        train_preference(tiny_unet(), pairs, images, config=replace(config, steps=2))


@pytest.mark.parametrize(
    ("change", "difference"),
    [
        ({"pairs": swapped}, "pairs: stored table of 16 rows"),
        ({"config": lambda c: replace(c, beta=500.0)}, "beta: stored 2000.0, now 500.0"),
        ({"model": shifted}, "start_weights"),
    ],
)
def test_a_checkpoint_of_other_pairs_beta_or_reference_is_refused(
    separable, tiny_unet, tmp_path, change, difference
):
    pairs, images = separable
    config = quick(steps=1, checkpoint_dir=str(tmp_path))
    train_preference(tiny_unet(), pairs, images, config=config)
    other = {"pairs": pairs, "model": tiny_unet(), "config": config}
    for name, edit in change.items():
        other[name] = edit(other[name])
    with pytest.raises(ValueError, match="another run") as refused:
        train_preference(other["model"], other["pairs"], images, config=other["config"])
    assert difference in str(refused.value)


def test_the_reference_stays_frozen_and_the_model_moves(separable, tiny_unet, copies):
    pairs, images = separable
    model = tiny_unet()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    trained, history = train_preference(model, pairs, images, config=quick())
    (reference,), calls = copies
    assert not reference.training
    assert not any(p.requires_grad for p in reference.parameters())
    assert calls == [(2 * 4, False)] * 4  # one call a step, winners and losers, no gradient
    assert all(torch.equal(v, start[k]) for k, v in reference.state_dict().items())
    assert not all(torch.equal(v, start[k]) for k, v in trained.state_dict().items())
    assert history["reward_margin"].iloc[0] == 0.0  # model = reference at the first step
    assert history["reward_accuracy"].iloc[0] == 0.0


def test_reference_free_training_builds_and_runs_no_reference(separable, tiny_unet, copies):
    pairs, images = separable
    model, calls = tiny_unet(), []
    model.register_forward_pre_hook(lambda module, args: calls.append(len(args[0])))
    _, history = train_preference(model, pairs, images, config=quick(variant="reference_free"))
    assert copies == ([], [])
    assert calls == [2 * 4] * 4
    assert history["reward_margin"].iloc[0] != 0.0  # the margin is the model's own
    assert list(history.columns) == ["step", "loss", "reward_accuracy", "reward_margin"]


def test_a_short_run_raises_preference_accuracy_on_separable_pairs(separable, tiny_unet):
    pairs, images = separable
    model = tiny_unet()
    before = preference_accuracy(model, pairs, images, draws=8)
    config = quick(steps=20, batch_pairs=8, lr=1e-3)
    trained, _ = train_preference(model, pairs, images, config=config)
    after = preference_accuracy(trained, pairs, images, draws=8)
    # seeds 0-3 of the run: 0.56 before, 0.84-0.91 after
    assert before.mean() < 0.65 and after.mean() > before.mean() + 0.2


def test_what_the_run_learns_carries_to_pairs_it_never_saw(separable, tiny_unet):
    pairs, images = separable  # fit on half the pairs, measure on the other half
    fit, held_out = pairs.iloc[:8].reset_index(drop=True), pairs.iloc[8:].reset_index(drop=True)
    model = tiny_unet()
    before = preference_accuracy(model, held_out, images, draws=8)
    trained, _ = train_preference(
        model, fit, images, config=quick(steps=20, batch_pairs=8, lr=1e-3)
    )
    after = preference_accuracy(trained, held_out, images, draws=8)
    assert after.mean() > before.mean() + 0.15


def test_preference_accuracy_is_per_pair_and_flips_with_the_pair(separable, tiny_unet):
    pairs, images = separable
    model = tiny_unet()
    accuracy = preference_accuracy(model, pairs, images, draws=4, seed=3)
    assert accuracy.shape == (16,) and set(accuracy) <= {0, 0.25, 0.5, 0.75, 1}
    np.testing.assert_array_equal(
        preference_accuracy(model, swapped(pairs), images, draws=4, seed=3), 1 - accuracy
    )
    some = pairs.iloc[::-3]  # a pair's draws follow its pair_id, not its row
    np.testing.assert_array_equal(
        preference_accuracy(model, some, images, draws=4, seed=3), accuracy[::-3]
    )
    other_seed = preference_accuracy(model, pairs, images, draws=4, seed=4)
    assert not np.array_equal(other_seed, accuracy)


def test_pairs_missing_a_condition_column_are_refused(separable, tiny_unet):
    pairs, images = separable
    without_sex = pairs.drop(columns="sex")
    with pytest.raises(KeyError, match="missing columns \\['sex'\\]"):
        train_preference(tiny_unet(), without_sex, images, config=quick())
    with pytest.raises(KeyError, match="missing columns \\['sex'\\]"):
        preference_accuracy(tiny_unet(), without_sex, images)
    with pytest.raises(ValueError, match=r"images must be \(N, 3, 16, 16\)"):
        preference_accuracy(tiny_unet(), pairs, images[:, :, :8, :8])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"variant": "ipo"}, "variant must be one of"),
        ({"beta": 0.0}, "beta must be > 0"),
        ({"resume": "always"}, "resume must be one of"),
    ],
)
def test_a_config_with_an_unknown_variant_beta_or_resume_is_refused(change, message):
    with pytest.raises(ValueError, match=message):
        PreferenceConfig(**change)
