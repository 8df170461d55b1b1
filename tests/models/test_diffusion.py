import numpy as np
import pytest
import torch

from fairkit import counterfactual as cf
from fairkit.data import synth
from fairkit.models import diffusion as D

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cohort():
    return synth.generate("skin", 256, seed=0, image_size=16)


def tiny(cohort):
    vocabulary = {"skin_group": ("dark", "light"), "sex": ("F", "M")}
    return D.ConditionalUNet(
        vocabulary=vocabulary, image_size=16, channels=3, block_out_channels=(8, 16)
    )


@pytest.fixture(scope="module")
def trained(cohort):
    config = D.DiffusionConfig(steps=100, batch_size=16, progress=False)
    return D.train_diffusion(tiny(cohort), cohort, config=config)


def test_a_tiny_model_learns(trained):
    _, history = trained
    assert history["loss"].iloc[-30:].mean() < 0.6 * history["loss"].iloc[:10].mean()


def test_resume_gives_the_same_weights(cohort, tmp_path):
    config = D.DiffusionConfig(
        steps=6, batch_size=8, checkpoint_dir=str(tmp_path), checkpoint_every=3, progress=False
    )
    whole, _ = D.train_diffusion(tiny(cohort), cohort, config=config)
    for f in tmp_path.iterdir():
        f.unlink()
    first = D.DiffusionConfig(**{**config.__dict__, "steps": 3})
    D.train_diffusion(tiny(cohort), cohort, config=first)
    resumed, history = D.train_diffusion(tiny(cohort), cohort, config=config)
    assert len(history) == 6
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("sampler", D.SAMPLERS)
def test_samplers_give_images_of_the_right_shape_and_range(trained, cohort, sampler):
    model, _ = trained
    codes = model.conditions.codes(cohort.meta.iloc[:4])
    out = D.sample(
        model, codes, sampler=sampler, steps=2, generator=torch.Generator().manual_seed(0)
    )
    assert out.shape == (4, 3, 16, 16) and torch.isfinite(out).all()
    assert D.to_uint8(out).dtype == np.uint8


def test_guidance_in_one_batch_equals_two_calls(trained, cohort):
    model, _ = trained
    codes = model.conditions.codes(cohort.meta.iloc[:4])
    x, t = torch.randn(4, 3, 16, 16), torch.full((4,), 500)
    with torch.no_grad():
        batched = D.guided_noise(model, x, t, codes, 3.0)
        cond = model(x, t, codes)
        uncond = model(x, t, model.conditions.null.expand_as(codes))
    torch.testing.assert_close(batched, uncond + 3.0 * (cond - uncond), rtol=1e-4, atol=1e-5)


def test_inversion_then_regeneration_reconstructs(trained, cohort):
    model, _ = trained
    few = cohort.subset(np.arange(8))
    back = cf.counterfactual(model, few, {}, steps=20)
    others = cf.pixel_l1(few, few.images[::-1])  # how far apart two images of the cohort are
    assert cf.pixel_l1(few, back).mean() < 0.5 * others.mean()


def test_interventions_change_the_condition_and_refuse_unknowns(trained, cohort):
    model, _ = trained
    few = cohort.subset(np.arange(4))
    out = cf.counterfactual(model, few, {"skin_group": "dark"}, steps=4)
    assert (out.meta["skin_group"] == "dark").all() and out.images.shape == few.images.shape
    with pytest.raises(ValueError, match="cannot intervene"):
        cf.counterfactual(model, few, {"diagnosis": "bcc"})
    with pytest.raises(ValueError, match="not one of"):
        cf.counterfactual(model, few, {"sex": "X"})


def test_flip_rates_count_changed_decisions(cohort):
    from fairkit.models.classifier import backbone

    classifier = backbone("small_cnn", in_channels=3, n_classes=2, image_size=16, width=4).eval()
    cohort = cohort.binarize(["melanoma", "bcc"], names=("benign", "malignant"))
    same = cf.flip_rates(classifier, cohort, cohort, by="sex", n_boot=20)
    assert (same["flip_rate"] == 0).all()
    inverted = type(cohort)(255 - cohort.images, cohort.meta, cohort.modality, cohort.classes)
    changed = cf.flip_rates(classifier, cohort, inverted, by="sex", threshold=0.5, n_boot=20)
    assert ((changed["lo"] <= changed["flip_rate"]) & (changed["flip_rate"] <= changed["hi"])).all()


def test_exact_and_learned_counterfactuals_answer_the_same_question(trained, cohort):
    model, _ = trained
    few = cohort.subset(np.arange(6))
    do = cf.skin_interventions(few.meta)["do(skin type)"]
    pair = cf.paired(model, few, do, steps=4)
    flipped = pair.exact.meta["skin_group"].to_numpy() != few.meta["skin_group"].to_numpy()
    assert flipped.all()
    assert (pair.learned.meta["skin_group"] == pair.exact.meta["skin_group"]).all()
    assert (cf.pixel_l1(few, pair.exact) > 0).all()


def test_soundness_scores_lie_in_their_ranges(trained, cohort):
    from fairkit.models.classifier import backbone

    model, _ = trained
    few = cohort.subset(np.arange(8))
    pairs = {"do(sex)": cf.paired(model, few, cf.skin_interventions(few.meta)["do(sex)"], steps=2)}
    judge = backbone("small_cnn", in_channels=3, n_classes=2, image_size=16, width=4).eval()
    table = cf.soundness(
        model, pairs, {"do(sex)": ("sex", judge, ("F", "M"))}, by="skin_group", steps=2
    )
    scores = table[["effectiveness", "effectiveness_exact", "agreement_with_exact"]]
    assert ((scores >= 0) & (scores <= 1)).all().all()
    assert (table[["l1_to_exact", "reversibility_l1", "change_exact"]] >= 0).all().all()
    assert set(table["group"]) == set(few.meta["skin_group"])
