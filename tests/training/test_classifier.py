import json
from contextlib import nullcontext

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from fairkit.data import synth
from fairkit.models import GroupSpecific
from fairkit.models.classifier import backbone
from fairkit.training import TrainConfig, classifier, fit, per_sample_cross_entropy, predict


@pytest.fixture(scope="module")
def cohorts():
    splits = synth.make_splits(
        "mri",
        seed=0,
        image_size=16,
        n_train=192,
        n_val=64,
        n_test=64,
        under={"attribute": "age_group", "group": "old", "fraction": 0.25},
    )
    return splits


def model():
    return backbone("small_cnn", in_channels=1, n_classes=2, image_size=16, width=4, seed=0)


def weights(m):
    return torch.cat(
        [p.detach().flatten() for p in m.state_dict().values() if p.is_floating_point()]
    )


def test_same_seed_same_weights_other_seed_other_weights(cohorts):
    config = TrainConfig(epochs=2, batch_size=32, seed=3, progress=False)
    a = fit(model(), cohorts["train"], config=config, val=cohorts["val"]).model
    torch.manual_seed(123)  # global state must not leak into the run
    b = fit(model(), cohorts["train"], config=config, val=cohorts["val"]).model
    c = fit(
        model(),
        cohorts["train"],
        config=TrainConfig(epochs=2, batch_size=32, seed=4, progress=False),
        val=cohorts["val"],
    ).model
    assert torch.equal(weights(a), weights(b))
    assert not torch.equal(weights(a), weights(c))


def test_resume_after_kill_gives_the_same_final_weights(cohorts, tmp_path, monkeypatch):
    config = TrainConfig(
        epochs=3, batch_size=32, seed=0, progress=False, checkpoint_dir=str(tmp_path / "ckpt")
    )
    reference = fit(
        model(),
        cohorts["train"],
        config=TrainConfig(epochs=3, batch_size=32, seed=0, progress=False),
        val=cohorts["val"],
    )
    calls = {"n": 0}
    real_score = classifier.validation_score

    def killed_in_second_epoch(*args):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_score(*args)

    monkeypatch.setattr(classifier, "validation_score", killed_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        fit(model(), cohorts["train"], config=config, val=cohorts["val"])
    assert (tmp_path / "ckpt" / "last.safetensors").exists()
    monkeypatch.setattr(classifier, "validation_score", real_score)
    resumed = fit(model(), cohorts["train"], config=config, val=cohorts["val"])
    assert torch.equal(weights(resumed.model), weights(reference.model))
    assert resumed.history["epoch"].tolist() == [0, 1, 2]
    assert resumed.best_epoch == reference.best_epoch


def test_zero_weight_samples_do_not_train(cohorts):
    half = np.zeros(len(cohorts["train"]))
    half[::2] = 1
    config = TrainConfig(epochs=1, batch_size=32, seed=0, progress=False)
    weighted = fit(model(), cohorts["train"], config=config, sample_weight=half).model
    assert not torch.equal(
        weights(weighted), weights(fit(model(), cohorts["train"], config=config).model)
    )
    with pytest.raises(ValueError, match="finite non-negative"):
        fit(model(), cohorts["train"], config=config, sample_weight=-half)


def test_group_balanced_sampling_draws_groups_equally(cohorts):
    groups, n_groups = classifier._group_codes(cohorts["train"], "age_group")
    config = TrainConfig(sampling="group_balanced", group_column="age_group")
    sampler = classifier.EpochOrder(groups, n_groups, config)
    share = groups[list(sampler)].float().mean().item()
    assert abs(share - 0.5) < 0.1 and abs(groups.float().mean().item() - 0.5) > 0.2


def test_epoch_order_is_fixed_by_seed_and_epoch(cohorts):
    groups, n_groups = classifier._group_codes(cohorts["train"], None)
    sampler = classifier.EpochOrder(groups, n_groups, TrainConfig(seed=3))
    first = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first and sorted(list(sampler)) == sorted(first)
    sampler.set_epoch(0)
    assert list(sampler) == first


def test_group_dro_upweights_the_group_with_higher_loss():
    losses = torch.tensor([1.0, 1.0, 3.0, 3.0])
    groups = torch.tensor([0, 0, 1, 1])
    loss, q = classifier._group_dro(losses, groups, torch.tensor([0.5, 0.5]), eta=0.5)
    assert q[1] > q[0] and q.sum().item() == pytest.approx(1)
    assert loss.item() == pytest.approx((q * torch.tensor([1.0, 3.0])).sum().item())


def test_groupdro_and_worst_group_selection_run(cohorts):
    config = TrainConfig(
        epochs=2,
        batch_size=32,
        objective="groupdro",
        group_column="age_group",
        selection="worst_group",
        progress=False,
    )
    result = fit(model(), cohorts["train"], config=config, val=cohorts["val"])
    table = predict(result.model, cohorts["test"])
    assert {"y_true", "y_pred", "score_healthy", "score_dementia", "age_group"} <= set(
        table.columns
    )
    assert not any(c.startswith("u_") for c in table.columns)
    assert np.allclose(table[["score_healthy", "score_dementia"]].sum(axis=1), 1, atol=1e-5)


def test_worst_group_selection_is_refused_before_training_where_a_group_has_one_class(cohorts):
    val = cohorts["val"]
    old = (val.meta["age_group"] == "old").to_numpy()
    one_class = val.subset(~old | (val.labels == val.labels[old][0]))
    config = TrainConfig(epochs=1, group_column="age_group", selection="worst_group",
                         progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="age_group='old' hold fewer than two classes"):
        fit(model(), cohorts["train"], config=config, val=one_class)


def test_per_head_selection_keeps_each_head_at_its_own_best_epoch(cohorts, monkeypatch):
    script = iter([[0.6, 0.5], [0.9, 0.4], [0.7, 0.8]])  # old best at epoch 1, young at 2
    seen = []

    def scripted_scores(model, val, config, device, epoch):
        seen.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return np.array(next(script))

    monkeypatch.setattr(classifier, "_selection_scores", scripted_scores)
    heads = GroupSpecific(model, column="age_group", groups=["old", "young"], share_stages=0)
    config = TrainConfig(epochs=3, batch_size=32, selection="per_head", progress=False)
    kept = fit(heads, cohorts["train"], config=config, val=cohorts["val"]).model.state_dict()
    for key, value in kept.items():
        assert torch.equal(value, seen[1 if key.startswith("branches.0.") else 2][key]), key
    young = next(k for k in kept if k.startswith("branches.1.") and k.endswith("weight"))
    assert not torch.equal(seen[1][young], seen[2][young])  # the epochs differ: a real choice


@pytest.mark.parametrize("shared", [1, None])
def test_per_head_selection_refuses_a_model_whose_heads_share_stages(cohorts, shared):
    net = (
        model()
        if shared is None
        else GroupSpecific(model, column="age_group", groups=["old", "young"], share_stages=shared)
    )
    config = TrainConfig(epochs=1, batch_size=32, selection="per_head", progress=False)
    with pytest.raises(ValueError, match="per_head selection needs a model of independent heads"):
        fit(net, cohorts["train"], config=config, val=cohorts["val"])


def test_runs_of_different_precision_follow_each_other(cohorts):
    """A bf16 run leaves nothing behind: the float32 run after it equals the one before it."""
    trained = []
    for precision in ("no", "bf16", "no"):
        config = TrainConfig(epochs=1, batch_size=64, mixed_precision=precision, progress=False)
        trained.append(weights(fit(model(), cohorts["train"], config=config).model))
    assert torch.equal(trained[0], trained[2])
    assert not torch.equal(trained[0], trained[1])  # bf16 did run in lower precision


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="sampling must be one of"):
        TrainConfig(sampling="balanced")
    with pytest.raises(ValueError, match="need group_column"):
        TrainConfig(objective="groupdro")
    with pytest.raises(ValueError, match="resume must be one of"):
        TrainConfig(resume="keep")


def parameters(m):
    return torch.cat([p.detach().flatten() for p in m.parameters()])


def test_the_loss_is_pluggable(cohorts):
    config = TrainConfig(epochs=1, batch_size=32, weight_decay=0.0, progress=False)
    start = model()
    calls = []

    def zero(logits, y):
        calls.append(len(y))
        return logits.sum(-1) * 0  # (B,): no gradient, so AdamW without decay moves nothing

    unmoved = fit(model(), cohorts["train"], config=config, loss=zero).model
    assert sum(calls) == len(cohorts["train"])
    assert torch.equal(parameters(unmoved), parameters(start))
    default = fit(model(), cohorts["train"], config=config).model
    explicit = fit(model(), cohorts["train"], config=config, loss=per_sample_cross_entropy).model
    assert not torch.equal(parameters(default), parameters(start))
    assert torch.equal(weights(explicit), weights(default))


def test_per_head_selection_refuses_a_head_without_both_classes_before_training(cohorts):
    val = cohorts["val"]
    one_class = val.subset(~((val.meta["age_group"] == "old") & (val.labels == 1)))
    heads = GroupSpecific(model, column="age_group", groups=["old", "young"], share_stages=0)
    config = TrainConfig(epochs=1, batch_size=32, selection="per_head", progress=False)
    with pytest.raises(ValueError, match="age_group='old' hold fewer than two classes"):
        fit(heads, cohorts["train"], config=config, val=one_class)


def checkpointed(tmp_path, **settings):
    return TrainConfig(
        **{"epochs": 2, "batch_size": 32, "progress": False}
        | {"checkpoint_dir": str(tmp_path) if tmp_path else None}
        | settings
    )


@pytest.mark.parametrize(
    ("change", "difference"),
    [({"seed": 1}, "seed: stored 0, now 1"), ({"epochs": 3}, "epochs: stored 2, now 3")],
)
def test_a_checkpoint_of_another_run_is_refused(cohorts, tmp_path, change, difference):
    fit(model(), cohorts["train"], config=checkpointed(tmp_path), val=cohorts["val"])
    with pytest.raises(ValueError, match="another run") as refused:
        fit(model(), cohorts["train"], config=checkpointed(tmp_path, **change), val=cohorts["val"])
    assert difference in str(refused.value) and str(tmp_path) in str(refused.value)


def test_a_checkpoint_of_other_training_images_is_refused(cohorts, tmp_path):
    train = cohorts["train"]
    fit(model(), train, config=checkpointed(tmp_path), val=cohorts["val"])
    with pytest.raises(ValueError, match="train: stored"):
        fit(model(), train.subset(np.arange(1, len(train))), config=checkpointed(tmp_path))


def test_overwrite_trains_afresh_over_a_checkpoint_of_another_run(cohorts, tmp_path):
    fit(model(), cohorts["train"], config=checkpointed(tmp_path), val=cohorts["val"])
    config = checkpointed(tmp_path, seed=1, resume="overwrite")
    overwritten = fit(model(), cohorts["train"], config=config, val=cohorts["val"])
    fresh = fit(model(), cohorts["train"], config=checkpointed(None, seed=1), val=cohorts["val"])
    assert torch.equal(weights(overwritten.model), weights(fresh.model))
    resumed = fit(
        model(), cohorts["train"], config=checkpointed(tmp_path, seed=1), val=cohorts["val"]
    )
    assert torch.equal(weights(resumed.model), weights(fresh.model))  # now its own checkpoint


@pytest.mark.parametrize("killed_after_the_last_save", [False, True])
def test_an_early_stop_stays_stopped_when_run_again(
    cohorts, tmp_path, monkeypatch, killed_after_the_last_save
):
    script = [0.9, 0.5, 0.95, 0.96, 0.97]  # worse at epoch 1: patience 1 stops there
    monkeypatch.setattr(classifier, "_selection_scores", lambda *args: np.array([script[args[-1]]]))
    stopped = fit(model(), cohorts["train"], config=checkpointed(None, epochs=5, patience=1))
    assert stopped.history["epoch"].tolist() == [0, 1] and stopped.best_epoch == 0
    config = checkpointed(tmp_path, epochs=5, patience=1)
    if killed_after_the_last_save:
        killed_after_saving_epoch(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt) if killed_after_the_last_save else nullcontext():
        fit(model(), cohorts["train"], config=config)
    net, forwards = model(), []
    net.register_forward_pre_hook(lambda module, args: forwards.append(len(args[0])))
    again = fit(net, cohorts["train"], config=config)
    assert forwards == []  # no batch trained (and no validation: the scores are scripted)
    assert torch.equal(weights(again.model), weights(stopped.model))
    assert again.history["epoch"].tolist() == [0, 1] and again.best_epoch == 0


def test_a_truncated_checkpoint_names_the_file_and_the_way_out(cohorts, tmp_path):
    fit(model(), cohorts["train"], config=checkpointed(tmp_path), val=cohorts["val"])
    last = tmp_path / "last.safetensors"
    last.write_bytes(last.read_bytes()[:100])
    with pytest.raises(ValueError, match="truncated or corrupt") as refused:
        fit(model(), cohorts["train"], config=checkpointed(tmp_path), val=cohorts["val"])
    assert str(last) in str(refused.value) and "resume='overwrite'" in str(refused.value)


def flip_tensor_bytes(path):
    """Flip bytes in the tensor data of a safetensors file (past its 8-byte length and header)."""
    data = bytearray(path.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")
    for offset in (0, 5, 9, 40):
        data[start + offset] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("name", ["best.safetensors", "last.safetensors"])
def test_flipped_bytes_in_a_checkpoint_are_refused_by_name(cohorts, tmp_path, name):
    fit(model(), cohorts["train"], config=checkpointed(tmp_path), val=cohorts["val"])
    flip_tensor_bytes(tmp_path / name)
    with pytest.raises(ValueError, match="is corrupt") as refused:
        fit(model(), cohorts["train"], config=checkpointed(tmp_path), val=cohorts["val"])
    assert str(tmp_path / name) in str(refused.value) and f"delete {tmp_path}" in str(refused.value)


def test_another_seeds_best_weights_beside_this_runs_last_are_refused(cohorts, tmp_path):
    mine, other = tmp_path / "mine", tmp_path / "other"
    fit(model(), cohorts["train"], config=checkpointed(mine), val=cohorts["val"])
    fit(model(), cohorts["train"], config=checkpointed(other, seed=1), val=cohorts["val"])
    (other / "best.safetensors").replace(mine / "best.safetensors")
    with pytest.raises(ValueError, match="another run") as refused:
        fit(model(), cohorts["train"], config=checkpointed(mine), val=cohorts["val"])
    message = str(refused.value)
    assert str(mine / "best.safetensors") in message and "seed: stored 1, now 0" in message


def test_best_weights_without_a_hash_are_refused(cohorts, tmp_path):
    fit(model(), cohorts["train"], config=checkpointed(tmp_path), val=cohorts["val"])
    best = tmp_path / "best.safetensors"
    save_file(load_file(str(best)), str(best))  # as written before checksums and identities
    with pytest.raises(ValueError, match="no content hash") as refused:
        fit(model(), cohorts["train"], config=checkpointed(tmp_path), val=cohorts["val"])
    assert str(best) in str(refused.value)


def scripted(monkeypatch, script):
    """Validation scores read from ``script`` by epoch, in place of the real ones."""
    monkeypatch.setattr(classifier, "_selection_scores", lambda *args: np.array([script[args[-1]]]))


def killed_after_saving_epoch(monkeypatch, killed):
    """Make ``save_training_state`` raise KeyboardInterrupt once it has saved epoch ``killed``."""
    real_save = classifier.save_training_state

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        if json.loads(kwargs["metadata"]["state"])["epoch"] == killed:
            raise KeyboardInterrupt

    monkeypatch.setattr(classifier, "save_training_state", save_then_die)
    return real_save


def test_best_weights_of_another_epoch_than_last_keeps_are_refused(cohorts, tmp_path, monkeypatch):
    scripted(monkeypatch, [0.5, 0.9, 0.4])  # best at epoch 1
    config = checkpointed(tmp_path, epochs=3)
    real_save = killed_after_saving_epoch(monkeypatch, 0)
    with pytest.raises(KeyboardInterrupt):
        fit(model(), cohorts["train"], config=config)
    best = tmp_path / "best.safetensors"
    epoch_zero = best.read_bytes()
    monkeypatch.setattr(classifier, "save_training_state", real_save)
    assert fit(model(), cohorts["train"], config=config).best_epoch == 1
    best.write_bytes(epoch_zero)
    with pytest.raises(ValueError, match="epoch 0.*epoch 1") as refused:
        fit(model(), cohorts["train"], config=config)
    assert str(best) in str(refused.value)
    best.unlink()
    with pytest.raises(ValueError, match="missing") as refused:
        fit(model(), cohorts["train"], config=config)
    assert str(best) in str(refused.value)


def test_a_kill_between_the_best_and_the_last_save_resumes_to_the_same_weights(
    cohorts, tmp_path, monkeypatch
):
    scripted(monkeypatch, [0.5, 0.9, 0.95])  # each epoch better: best is written before last
    whole = fit(model(), cohorts["train"], config=checkpointed(None, epochs=3))
    config = checkpointed(tmp_path, epochs=3)
    real_save = classifier.save_training_state

    def die_before_saving_epoch_one(*args, **kwargs):
        if json.loads(kwargs["metadata"]["state"])["epoch"] == 1:
            raise KeyboardInterrupt
        real_save(*args, **kwargs)

    monkeypatch.setattr(classifier, "save_training_state", die_before_saving_epoch_one)
    with pytest.raises(KeyboardInterrupt):
        fit(model(), cohorts["train"], config=config)
    monkeypatch.setattr(classifier, "save_training_state", real_save)
    resumed = fit(model(), cohorts["train"], config=config)
    assert torch.equal(weights(resumed.model), weights(whole.model))
    assert resumed.best_epoch == whole.best_epoch == 2


def test_best_weights_without_a_last_checkpoint(cohorts, tmp_path, monkeypatch):
    mine, other = tmp_path / "mine", tmp_path / "other"
    fresh = fit(model(), cohorts["train"], config=checkpointed(None), val=cohorts["val"])
    fit(model(), cohorts["train"], config=checkpointed(other, seed=1), val=cohorts["val"])
    mine.mkdir()
    (other / "best.safetensors").replace(mine / "best.safetensors")
    with pytest.raises(ValueError, match="another run") as refused:
        fit(model(), cohorts["train"], config=checkpointed(mine), val=cohorts["val"])
    assert str(mine / "best.safetensors") in str(refused.value)
    overwritten = fit(
        model(), cohorts["train"], config=checkpointed(mine, resume="overwrite"), val=cohorts["val"]
    )
    assert torch.equal(weights(overwritten.model), weights(fresh.model))
    (mine / "last.safetensors").unlink()  # this run's own best, left by a kill before its last
    again = fit(model(), cohorts["train"], config=checkpointed(mine), val=cohorts["val"])
    assert torch.equal(weights(again.model), weights(fresh.model))


def test_best_weights_saved_as_last_are_refused(cohorts, tmp_path):
    fit(model(), cohorts["train"], config=checkpointed(tmp_path), val=cohorts["val"])
    (tmp_path / "best.safetensors").replace(tmp_path / "last.safetensors")
    with pytest.raises(ValueError, match="written as best.safetensors") as refused:
        fit(model(), cohorts["train"], config=checkpointed(tmp_path), val=cohorts["val"])
    assert str(tmp_path / "last.safetensors") in str(refused.value)


def test_a_checkpoint_dir_that_is_a_file_is_refused_before_training(cohorts, tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("")
    net, forwards = model(), []
    net.register_forward_pre_hook(lambda module, args: forwards.append(1))
    with pytest.raises(NotADirectoryError, match="expected a folder") as refused:
        fit(net, cohorts["train"], config=checkpointed(taken), val=cohorts["val"])
    assert str(taken) in str(refused.value) and "\n" not in str(refused.value)
    assert forwards == []


def test_a_balanced_attribute_classifier_draws_each_class_equally_often(cohorts, monkeypatch):
    train, val = cohorts["train"], cohorts["val"]  # old patients are a quarter of training
    seen = {}

    def record(net, cohort, *, config, val):
        seen["config"] = config
        return classifier.TrainResult(model=net, history=None, best_epoch=0, config=config)

    monkeypatch.setattr(classifier, "fit", record)
    config = TrainConfig(epochs=1, batch_size=32, progress=False)
    classifier.fit_attribute(lambda k: model(), train, val, attribute="age_group", config=config)
    assert seen["config"].sampling == "uniform"
    classifier.fit_attribute(lambda k: model(), train, val, attribute="age_group", config=config,
                             balanced=True)  # fmt: skip
    balanced = seen["config"]
    assert (balanced.sampling, balanced.group_column) == ("group_balanced", "age_group")
    codes = torch.as_tensor((train.meta["age_group"] == "old").to_numpy().astype(np.int64))
    drawn = codes[list(classifier.EpochOrder(codes, 2, balanced))]
    assert codes.float().mean() < 0.3 and 0.4 < drawn.float().mean() < 0.6
