import numpy as np
import pandas as pd
import pytest
import torch
from diffusers import UNet2DModel

from fairkit import counterfactual as cf
from fairkit.models import diffusion

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("sampler", diffusion.SAMPLERS)
def test_samplers_give_images_of_the_right_shape_and_range(trained_unet, skin16, sampler):
    model, _ = trained_unet
    codes = model.conditions.codes(skin16.meta.iloc[:4])
    out = diffusion.sample(
        model, codes, sampler=sampler, steps=2, generator=torch.Generator().manual_seed(0)
    )
    assert out.shape == (4, 3, 16, 16) and torch.isfinite(out).all()
    assert diffusion.to_uint8(out).dtype == np.uint8


def test_guidance_in_one_batch_equals_two_calls(trained_unet, skin16):
    model, _ = trained_unet
    codes = model.conditions.codes(skin16.meta.iloc[:4])
    x, t = torch.randn(4, 3, 16, 16), torch.full((4,), 500)
    with torch.no_grad():
        batched = diffusion.guided_noise(model, x, t, codes, 3.0)
        cond = model(x, t, codes)
        uncond = model(x, t, model.conditions.null.expand_as(codes))
    torch.testing.assert_close(batched, uncond + 3.0 * (cond - uncond), rtol=1e-4, atol=1e-5)


def test_inversion_then_regeneration_reconstructs(trained_unet, skin16):
    model, _ = trained_unet
    few = skin16.subset(np.arange(8))
    back = cf.counterfactual(model, few, {}, steps=20)
    others = cf.pixel_l1(few, few.images[::-1])  # how far apart two images of the cohort are
    assert cf.pixel_l1(few, back).mean() < 0.5 * others.mean()


def test_one_abduction_serves_every_intervention(trained_unet, skin16):
    model, _ = trained_unet
    few = skin16.subset(np.arange(6))
    noise = cf.abduct(model, few, steps=4)
    do = cf.skin_interventions(few.meta)["do(sex)"]
    shared = cf.paired(model, few, do, steps=4, guidance=2.0, noise=noise)
    fresh = cf.paired(model, few, do, steps=4, guidance=2.0)
    np.testing.assert_array_equal(shared.learned.images, fresh.learned.images)
    with pytest.raises(ValueError, match="noise holds 3 images, the cohort 6"):
        cf.paired(model, few, do, steps=4, noise=noise[:3])


def test_calls_of_any_size_give_the_same_images(trained_unet, skin16):
    model, _ = trained_unet
    few = skin16.subset(np.arange(10))
    x0, codes = diffusion.to_model_range(few.images), model.conditions.codes(few.meta)
    by_call = [diffusion.invert(model, x0, codes, steps=4, batch_size=n) for n in (3, 64)]
    torch.testing.assert_close(*by_call, rtol=1e-4, atol=1e-4)
    drawn = [diffusion.sample(model, codes, steps=4, noise=by_call[1], batch_size=n, clip=False)
             for n in (4, 64)]  # fmt: skip
    torch.testing.assert_close(*drawn, rtol=1e-4, atol=1e-4)


def test_interventions_change_the_condition_and_refuse_unknowns(trained_unet, skin16):
    model, _ = trained_unet
    few = skin16.subset(np.arange(4))
    out = cf.counterfactual(model, few, {"skin_group": "dark"}, steps=4)
    assert (out.meta["skin_group"] == "dark").all() and out.images.shape == few.images.shape
    with pytest.raises(ValueError, match="cannot intervene"):
        cf.counterfactual(model, few, {"diagnosis": "bcc"})
    with pytest.raises(ValueError, match="not one of"):
        cf.counterfactual(model, few, {"sex": "X"})


def test_flip_rates_count_changed_decisions(skin16):
    from fairkit.models.classifier import backbone

    classifier = backbone("small_cnn", in_channels=3, n_classes=2, image_size=16, width=4).eval()
    cohort = skin16.binarize(["melanoma", "bcc"], names=("benign", "malignant"))
    same = cf.flip_rates(classifier, cohort, cohort, by="sex", positive="malignant", threshold=0.5,
                        n_boot=20)  # fmt: skip
    assert (same["flip_rate"] == 0).all()
    inverted = type(cohort)(255 - cohort.images, cohort.meta, cohort.modality, cohort.classes)
    label_changed = np.arange(len(cohort)) % 4 == 0
    changed = cf.flip_rates(classifier, cohort, inverted, by="sex", positive="malignant",
                            threshold=0.5, n_boot=20, label_changed=label_changed)  # fmt: skip
    assert ((changed["lo"] <= changed["flip_rate"]) & (changed["flip_rate"] <= changed["hi"])).all()
    counts = changed.groupby("true_label")["n"].sum()
    assert counts["changed"] == label_changed.sum() and counts.sum() == len(cohort)


def test_exact_and_learned_counterfactuals_answer_the_same_question(trained_unet, skin16):
    model, _ = trained_unet
    few = skin16.subset(np.arange(6))
    do = cf.skin_interventions(few.meta)["do(skin type)"]
    pair = cf.paired(model, few, do, steps=4)
    flipped = pair.exact.meta["skin_group"].to_numpy() != few.meta["skin_group"].to_numpy()
    assert flipped.all()
    assert (pair.learned.meta["skin_group"] == pair.exact.meta["skin_group"]).all()
    assert (cf.pixel_l1(few, pair.exact) > 0).all()


def test_soundness_scores_lie_in_their_ranges_per_direction(trained_unet, skin16):
    from fairkit.models.classifier import backbone

    model, _ = trained_unet
    few = skin16.subset(np.arange(8))
    pairs = {"do(sex)": cf.paired(model, few, cf.skin_interventions(few.meta)["do(sex)"], steps=2)}
    judge = backbone("small_cnn", in_channels=3, n_classes=2, image_size=16, width=4).eval()
    images = cf.soundness(model, pairs, {"do(sex)": ("sex", judge, ("F", "M"))}, steps=2)
    scores = images[["effectiveness", "effectiveness_exact", "agreement_with_exact"]]
    assert ((scores >= 0) & (scores <= 1)).all().all()
    assert (images[["l1_to_exact", "reversibility_l1", "change_exact"]] >= 0).all().all()
    assert set(images["direction"]) <= {"F → M", "M → F"}
    summary = cf.soundness_summary(images, n_boot=20, seed=0)
    finite = summary.dropna(subset=["value"])
    assert (
        (finite["lo"] <= finite["value"] + 1e-12) & (finite["value"] <= finite["hi"] + 1e-12)
    ).all()


def test_a_judge_at_chance_on_exact_counterfactuals_is_invalid_and_withheld():
    n = 200
    images = pd.DataFrame(
        {
            "intervention": "do(age)",
            "direction": np.where(np.arange(n) % 2, "young → old", "old → young"),
            "target": np.where(np.arange(n) % 2, "old", "young"),
            "effectiveness_exact": np.arange(n) % 2 == 1,  # always says "old": chance
            "effectiveness": True,
            "agreement_with_exact": True,
            **{k: 0.1 for k in ("l1_to_exact", "reversibility_l1", "change_exact")},
        }
    )
    validity = cf.judge_validity(images, n_boot=100, seed=0).iloc[0]
    assert validity.balanced_accuracy == pytest.approx(0.5) and not validity.valid
    summary = cf.soundness_summary(images, n_boot=100, seed=0).set_index(["direction", "metric"])
    assert np.isnan(summary.loc[("young → old", "effectiveness"), "value"])
    assert summary.loc[("young → old", "l1_to_exact"), "value"] == pytest.approx(0.1)
    good = images.assign(effectiveness_exact=True)
    assert cf.judge_validity(good, n_boot=100, seed=0).iloc[0].valid


def test_save_pretrained_then_from_pretrained_gives_the_same_model(trained_unet, skin16, tmp_path):
    model, _ = trained_unet
    model.save_pretrained(tmp_path / "unet")
    loaded = diffusion.ConditionalUNet.from_pretrained(tmp_path / "unet")
    assert not loaded.training
    assert loaded.config.train_timesteps == model.config.train_timesteps
    assert list(loaded.conditions.vocabulary.items()) == list(model.conditions.vocabulary.items())
    codes = model.conditions.codes(skin16.meta.iloc[:4])
    assert torch.equal(loaded.conditions.codes(skin16.meta.iloc[:4]), codes)
    x, t = torch.randn(4, 3, 16, 16), torch.full((4,), 300)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, t, codes), model(x, t, codes), rtol=0, atol=0)


def test_from_pretrained_refuses_another_model(tmp_path):
    other = UNet2DModel(
        sample_size=8,
        block_out_channels=(8, 8),
        down_block_types=("DownBlock2D",) * 2,
        up_block_types=("UpBlock2D",) * 2,
        norm_num_groups=8,
    )
    other.save_pretrained(tmp_path / "other")
    with pytest.raises(ValueError, match="holds a UNet2DModel, not a ConditionalUNet"):
        diffusion.ConditionalUNet.from_pretrained(tmp_path / "other")


def record_timesteps(model):
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(args[1].max().item()))
    return seen


@pytest.mark.parametrize("sampler", diffusion.SAMPLERS)
def test_sampling_and_inversion_use_the_models_noise_schedule(tiny_unet, skin16, sampler):
    model = tiny_unet(train_timesteps=200).eval()
    seen = record_timesteps(model)
    codes = model.conditions.codes(skin16.meta.iloc[:2])
    generator = torch.Generator().manual_seed(0)
    diffusion.sample(model, codes, sampler=sampler, steps=2, guidance=1.0, generator=generator)
    assert diffusion.make_scheduler(model, sampler).config.num_train_timesteps == 200
    assert len(seen) == 2 and max(seen) < 200 and max(seen) >= 100
    seen.clear()
    diffusion.invert(model, torch.zeros(2, 3, 16, 16), codes, steps=2)
    assert len(seen) == 2 and max(seen) < 200 and max(seen) >= 100
