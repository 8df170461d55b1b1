"""Learned counterfactuals: abduction by DDIM inversion, interventions, soundness, flip rates."""

import numpy as np
import pandas as pd
import pytest
import torch

from fairkit import counterfactual as cf
from fairkit.models import diffusion

pytestmark = pytest.mark.slow  # the fixtures train a diffusion model


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
