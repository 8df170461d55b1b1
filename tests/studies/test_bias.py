import numpy as np
import pandas as pd
import pytest

from fairkit.methods import Threshold
from fairkit.studies import bias


def test_chapter_2_findings_read_the_first_and_last_setting():
    def rows(metric, values, **labels):
        return pd.DataFrame(
            {"modality": "skin", "metric": metric, "strength": [0.5, 0.1], "value": values,
             "lo": [v - 0.05 for v in values], "hi": [v + 0.05 for v in values], **labels}
        )  # fmt: skip

    under = (
        pd.concat(
            [rows("auroc", [0.8, 0.6], group="dark"), rows("auroc", [0.9, 0.9], group="light")]
        ),
        pd.concat([rows("gap_auroc", [0.1, 0.3]), rows("equalized_odds", [0.2, 0.25])]),
    )
    spurious = (rows("auroc", [0.84, 0.55], group="dark"), rows("equalized_odds", [0.38, 0.07]))
    shortcut = pd.DataFrame(
        {"modality": "skin", "test": ["tied", "tied", "removed"], "auroc": [0.9, 1.0, 0.6]}
    )
    found = bias.findings("skin", "dark", under=under, spurious=spurious, shortcut=shortcut)
    assert found.shares == (0.5, 0.1)
    assert (found.minority_auroc.first, found.minority_auroc.last) == (0.8, 0.6)
    assert found.minority_auroc.first_lo == pytest.approx(0.75)
    assert str(found.auroc_gap) == "0.100 [0.050, 0.150] → 0.300 [0.250, 0.350]"
    assert found.shortcut_auroc == pytest.approx((0.95, 0.6))
    assert found.tied_auroc == pytest.approx((0.84, 0.55))
    assert str(found.tied_eodds_gap) == "0.380 [0.330, 0.430] → 0.070 [0.020, 0.120]"


def test_amplification_is_a_paired_difference_on_the_same_test_patients():
    from fairkit.config import settings
    from fairkit.experiment import Experiment

    experiment = Experiment("skin", settings("smoke"), 0, "cpu", fixed_majority=True)
    rows = bias.amplification(experiment, "under", [0.5, 0.25]).set_index(["group", "metric"])
    assert set(rows.index) >= {("dark", "auroc"), ("all", "gap_auroc")}
    gap = rows.loc[("all", "gap_auroc")]
    assert gap.value == pytest.approx(gap.a_value - gap.b_value)
    assert gap.lo <= gap.value <= gap.hi and gap["comparison"] == "under"
    same = bias.amplification(experiment, "under", [0.5, 0.5])
    assert (same["value"] == 0).all() and (same["verdict"] == "no detectable difference").all()


@pytest.fixture(scope="module")
def smoke_skin():
    from fairkit.config import settings
    from fairkit.experiment import Experiment

    return Experiment("skin", settings("smoke"), 0, "cpu", fixed_majority=True)


def test_threshold_transfer_scores_where_thresholds_were_fitted_and_on_test(smoke_skin):
    table = bias.threshold_transfer(smoke_skin, strength=0.25, threshold=Threshold())
    assert set(zip(table["method"], table["split"], strict=True)) == {
        (m, s) for m in ("erm", "threshold") for s in ("validation", "test")
    }
    val = smoke_skin.scenario("under", 0.25).val
    sizes = table.drop_duplicates("group").set_index("group")["val_images"].drop("all")
    assert sizes.sum() == len(val)
    for _, part in table.groupby(["method", "split"]):
        rates = part[part["group"] != "all"].pivot(index="group", columns="metric", values="value")
        spread = (rates.max() - rates.min()).max()  # fairlearn's max(|dTPR|, |dFPR|)
        assert part.loc[part["metric"] == "equalized_odds", "value"].item() == pytest.approx(spread)


def test_external_site_scores_the_same_model_on_other_patients(smoke_skin):
    table = bias.external_site(smoke_skin, strength=0.25)
    internal = smoke_skin.report("erm", "under", 0.25).by_group
    auroc = internal[(internal["attribute"] == "skin_group") & (internal["metric"] == "auroc")]
    mine = table[(table["cohort"] == "internal test") & (table["metric"] == "auroc")]
    assert mine["value"].tolist() == pytest.approx(auroc["value"].tolist())
    external = table[(table["cohort"] == "external site") & (table["metric"] == "auroc")]
    assert not np.allclose(external["value"], mine["value"])


def test_intersections_cross_the_audited_attribute_with_another(smoke_skin):
    table = bias.intersections(smoke_skin, strength=0.25)
    groups = set(table["group"])
    assert groups == {f"{a} & {b}" for a in ("dark", "light") for b in ("F", "M")}
    assert table[table["metric"] == "auroc"]["n"].sum() == smoke_skin.settings.n_test


def test_label_noise_flips_the_minority_only(smoke_skin):
    train = smoke_skin.scenario("label_noise", 0.5).train.meta
    flipped = train.groupby("skin_group")["label_flipped"].mean()
    assert flipped["light"] == 0 and flipped["dark"] == pytest.approx(0.5, abs=0.05)


def test_evaluate_refuses_an_unknown_split(smoke_skin):
    with pytest.raises(ValueError, match="split must be 'test' or 'validation'"):
        smoke_skin.evaluate(smoke_skin.run("erm"), split="train")
    with pytest.raises(ValueError, match="in_group decides on test data only"):
        smoke_skin.evaluate(smoke_skin.run("in_group"), split="validation")


def test_longer_training_retrains_the_kept_candidates_apart_from_the_experiment(
    smoke_skin, monkeypatch
):
    from types import SimpleNamespace

    from fairkit import methods
    from fairkit.methods import erm

    trained = []

    def recording_fit(*args, config, **kwargs):
        trained.append((config.epochs, config.objective))
        return fit(*args, config=config, **kwargs)

    fit = erm.fit
    monkeypatch.setattr(erm, "fit", recording_fit)

    kept = {
        name: SimpleNamespace(chosen={"overall": methods.get(name)}) for name in ("erm", "groupdro")
    }
    with pytest.raises(ValueError, match="factor must be an integer above 1; got 1"):
        bias.longer_training(smoke_skin, kept, strength=0.25, rule="overall", factor=1)
    kept_before = set(smoke_skin._cache)
    table = bias.longer_training(
        smoke_skin, kept, strength=0.25, rule="overall", names=("groupdro",)
    )
    assert set(table["comparison"]) == {"baseline, overall AUROC, 2 epochs"}
    assert set(table["a"]) == {"groupdro"} and set(table["b"]) == {"erm"}
    assert trained == [(2, "erm"), (2, "groupdro")]  # twice the smoke setting's one epoch
    assert set(smoke_skin._cache) == kept_before  # trained in a copy with a cache of its own
    bias.longer_training(smoke_skin, kept, strength=0.25, rule="overall", names=("groupdro",))
    assert len(trained) == 4  # a second call starts from a fresh copy
    assert smoke_skin.settings.epochs == 1


def _baselines(values_by_method, *, blocks):
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        [
            {"rule": "overall", "modality": f"m{b}", "seed": 0, "method": method,
             "metric": "worst_auroc", "value": value + 0.01 * rng.normal()}
            for b in range(blocks)
            for method, value in values_by_method.items()
        ]
    )  # fmt: skip


def test_a_metric_where_lower_is_better_ranks_the_lowest_first():
    table = _baselines({"erm": 0.3, "groupdro": 0.1}, blocks=1).assign(metric="equalized_odds")
    ranked = bias.rank_methods(table, metric="equalized_odds")
    assert ranked.set_index("method")["rank"].to_dict() == {"erm": 2.0, "groupdro": 1.0}


def test_methods_are_ranked_within_each_cohort_and_post_processing_is_left_out():
    table = _baselines({"erm": 0.8, "groupdro": 0.7, "reweight": 0.6, "threshold": 0.8}, blocks=2)
    ranked = bias.rank_methods(table)
    assert set(ranked["method"]) == {"erm", "groupdro", "reweight"}
    assert ranked.groupby("method")["rank"].mean().to_dict() == {
        "erm": 1.0, "groupdro": 2.0, "reweight": 3.0
    }  # fmt: skip


def test_friedman_tells_a_consistent_order_from_none_and_nemenyi_names_the_pairs():
    ordered = bias.rank_methods(_baselines({"a": 0.9, "b": 0.7, "c": 0.5}, blocks=12))
    found = bias.friedman_nemenyi(ordered)
    assert found.p_value < 0.001 and found.mean_rank.to_dict() == {"a": 1.0, "b": 2.0, "c": 3.0}
    assert found.nemenyi.loc["a", "c"] < 0.05 and list(found.nemenyi.index) == ["a", "b", "c"]
    assert found.blocks == 12
    alike = bias.rank_methods(_baselines({"a": 0.7, "b": 0.7, "c": 0.7}, blocks=12))
    assert bias.friedman_nemenyi(alike).p_value > 0.05
    incomplete = ordered.drop(index=ordered.index[0])  # one block lacks a method
    assert bias.friedman_nemenyi(incomplete).blocks == 11
    with pytest.raises(ValueError, match="needs >= 2 complete blocks and >= 3 methods"):
        bias.friedman_nemenyi(ordered[ordered["method"] != "c"])


def test_a_baseline_costing_the_majority_is_named_with_its_grids_best_beside_erms():
    differences = pd.DataFrame(
        {"setting": "skin", "a": ["groupdro", "groupdro", "reweight"], "group": ["light", "dark", "light"],
         "metric": "auroc", "value": [-0.30, -0.08, -0.01], "lo": [-0.36, -0.14, -0.03],
         "hi": [-0.24, -0.02, 0.01]}
    )  # fmt: skip
    tuning_table = pd.DataFrame(
        {"modality": "skin", "method": ["erm", "erm", "groupdro", "reweight"],
         "overall": [0.70, 0.80, 0.57, 0.75]}
    )  # fmt: skip
    lines = bias.majority_costs(differences, tuning_table, minority={"skin": "dark"})
    assert lines == [
        "skin: groupdro lowers the majority's (light) AUROC by 0.300 [0.240, 0.360]; the best "
        "overall validation AUROC of its grid is 0.570, ERM's 0.800"
    ]
