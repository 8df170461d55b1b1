import numpy as np
import pandas as pd
import pytest

from fairkit.config import settings
from fairkit.data import Cohort
from fairkit.fairness import report
from fairkit.studies import fairgen as study


def scores(n: int, seed: int, *, penalty: float) -> pd.DataFrame:
    """Predictions whose accuracy is lower for group M by ``penalty`` (0: no gap)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    g = rng.choice(["F", "M"], n)
    wrong = rng.random(n) < 0.1 + penalty * (g == "M")
    s = np.where(y == 1, 0.8, 0.2)
    s = np.where(wrong, 1 - s, s)
    return pd.DataFrame(
        {"y_true": y, "score_neg": 1 - s, "score_pos": s, "sex": g, "patient_id": np.arange(n)}
    )


def reports(penalties: dict[str, float]):
    return {
        name: report(
            scores(4000, k, penalty=p),
            groups=["sex"],
            positive="pos",
            thresholds=0.5,
            n_boot=100,
            seed=0,
        )  # fmt: skip
        for k, (name, p) in enumerate(penalties.items())
    }


def improvement_row(table: pd.DataFrame, a: str) -> pd.Series:
    rows = table[(table["metric"] == "improvement") & (table["a"] == a)]
    assert len(rows) == 1
    return rows.iloc[0]


def test_improvement_is_the_relative_reduction_of_real_onlys_accuracy_gap():
    reps = reports({study.REAL_ONLY: 0.3, "dpo": 0.1})
    row = improvement_row(study.comparisons(reps, attribute="sex", setting="cxr, test"), "dpo")
    base = reps[study.REAL_ONLY].value("gap_accuracy", attribute="sex")
    new = reps["dpo"].value("gap_accuracy", attribute="sex")
    assert row["value"] == pytest.approx(100 * (base - new) / base)
    assert row["lo"] > 0 and row["verdict"] == "better"


def test_improvement_is_undefined_when_real_only_has_no_gap_to_reduce():
    reps = reports({study.REAL_ONLY: 0.0, "dpo": 0.1})
    row = improvement_row(study.comparisons(reps, attribute="sex", setting="cxr, test"), "dpo")
    assert np.isnan(row["value"]) and row["verdict"] == study.UNDEFINED


def test_overall_accuracy_is_the_groups_mean_paired_like_the_per_group_rows():
    reps = reports({study.REAL_ONLY: 0.3, "dpo": 0.1})
    table = study.comparisons(reps, attribute="sex", setting="cxr, test")
    row = table[(table["metric"] == "mean_accuracy") & (table["a"] == "dpo")].iloc[0]
    per_group = table[(table["metric"] == "accuracy") & (table["a"] == "dpo")]
    assert row["value"] == pytest.approx(per_group["value"].mean())
    assert row["lo"] < row["value"] < row["hi"] and row["setting"] == "cxr, test"
    assert row["verdict"] == "better"  # M's accuracy rose by about 0.2, F's stayed


@pytest.fixture(scope="module")
def scenario():
    return study.setting("skin", settings("smoke"), seed=0, device="cpu", minority_fraction=0.2)


def test_a_readers_sizes_replace_the_modes_and_reach_the_scenario():
    sizes = study.sized(settings("smoke"), n_train=300, n_test=150, generator_steps=7)
    assert (sizes.fairgen_train, sizes.fairgen_test, sizes.fairgen_diffusion_steps) == (300, 150, 7)
    assert study.sized(settings("smoke")) == settings("smoke")
    found = study.setting("mri", sizes, seed=0, device="cpu", minority_fraction=0.2)
    assert (len(found.train), len(found.test)) == (300, 150)
    assert found.train.images.shape[-1] == sizes.fairgen_size


def test_the_oracle_draws_the_plans_count_of_real_images_of_each_cell(scenario):
    plan = study.cells(scenario, rule="inverse")
    oracle = study.oracle(scenario, plan, seed=0)
    found = oracle.meta.groupby([scenario.attribute, study.FINDING]).size()
    for _, cell in plan[plan["synthesise"] > 0].iterrows():
        assert found[(cell[scenario.attribute], cell[study.FINDING])] == cell["synthesise"]
    assert found.sum() == plan["synthesise"].sum()
    assert not set(oracle.meta["patient_id"]) & set(scenario.train.meta["patient_id"])


def test_pairs_split_within_every_cell_into_fit_validation_and_test():
    pairs = pd.DataFrame(
        {"pair_id": range(80), "winner": range(80), "loser": range(80, 160),
         "sex": ["F"] * 40 + ["M"] * 40, "finding": ["a", "b"] * 40}
    )  # fmt: skip
    parts = study.split_pairs(pairs, seed=0)
    assert list(parts) == ["fit", "validation", "test"]
    ids = [set(p["pair_id"]) for p in parts.values()]
    assert sum(map(len, ids)) == 80 and not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    for name, share in study.PAIR_SPLITS.items():  # each cell's 20 pairs: 10, 5, 5
        assert (parts[name].groupby(["sex", "finding"]).size() == 20 * share).all()
    again = study.split_pairs(pairs, seed=0)
    assert all(again[k]["pair_id"].tolist() == parts[k]["pair_id"].tolist() for k in parts)


def test_the_manipulation_checks_fail_a_cell_short_of_any_bound():
    class Judges:  # a stand-in with the rater's interface: pixel (0, 0) says if seen as intended
        def intended(self, meta):
            return {"group": np.zeros(len(meta), int), "pathology": np.zeros(len(meta), int)}

        def probabilities(self, images):
            hits = images[:, 0, 0, 0].astype(float)  # 1 = seen as intended
            p = np.stack([hits, 1 - hits], axis=1)
            return {"group": p, "pathology": p}

        def realism(self, images):
            return images[:, 0, 1, 1] / 100  # pixel (1, 1): realism in hundredths

    def cohort(hits, realism):
        images = np.zeros((len(hits), 1, 2, 2), np.uint8)
        images[:, 0, 0, 0], images[:, 0, 1, 1] = hits, realism * 100
        meta = pd.DataFrame({"sex": "F", "finding": "pos", "label": 1}, index=range(len(hits)))
        return Cohort(images, meta, "cxr", ("neg", "pos"))

    real = cohort([1] * 10, 0.4)  # the judges see every real image as intended
    synthetic = {"good": cohort([1] * 9 + [0], 0.3), "poor": cohort([1] * 8 + [0] * 2, 0.3),
                 "noise": cohort([1] * 10, 0.04)}  # fmt: skip
    validity = pd.DataFrame({"component": ["pathology", "group"], "valid": [True, True]})
    table = study.manipulation_checks(Judges(), synthetic, real, attribute="sex", validity=validity)
    found = table.set_index("model")
    assert found.loc["good", "group_agreement"] == pytest.approx(0.9)
    assert found.loc["good", "finding_shortfall"] == pytest.approx(0.1)
    assert found.loc["good", "realism_ratio"] == pytest.approx(0.75)
    assert found.loc["noise", "realism_ratio"] == pytest.approx(0.1)
    assert found["passes"].to_dict() == {"good": True, "poor": False, "noise": False}
    invalid = validity.assign(valid=[True, False])
    table = study.manipulation_checks(Judges(), synthetic, real, attribute="sex", validity=invalid)
    assert not table["passes"].any() and table["group_agreement"].isna().all()


def test_an_invalid_judges_agreement_is_withheld():
    agreement = pd.DataFrame({"sex": ["F", "M"], "group_agreement": [0.9, 0.8],
                              "pathology_agreement": [0.7, 0.6], "n": [10, 10]})  # fmt: skip
    validity = pd.DataFrame({"component": ["pathology", "group"], "valid": [True, False]})
    shown = study.withheld(agreement, validity)
    assert shown["group_agreement"].isna().all()
    assert shown["pathology_agreement"].tolist() == [0.7, 0.6]


def _search(monkeypatch, *, accuracy_of, realism_of):
    """``align_tuned`` over a 2 x 2 x 2 grid of fake models (dicts of their settings)."""
    pairs = {name: pd.DataFrame({"pair_id": [name] * 4}) for name in study.PAIR_SPLITS}
    seen, folders = [], []

    def align(model, fit, images, *, beta, lr, steps, checkpoint_dir, **_):
        seen.append(fit["pair_id"].iloc[0])
        folders.append(checkpoint_dir)
        return {"beta": beta, "lr": lr, "steps": steps}, None

    def accuracy(model, scored, images, *, seed):
        seen.append(scored["pair_id"].iloc[0])
        return np.full(len(scored), 0.5 if model == "unaligned" else accuracy_of(model))

    monkeypatch.setattr(study, "align", align)
    monkeypatch.setattr(study, "preference_accuracy", accuracy)
    sizes = study.sized(
        settings("smoke"), betas=[500, 2000], learning_rates=[3e-5, 1e-4], dpo_steps=[4, 2]
    )
    chosen, search = study.align_tuned(
        "unaligned", pairs, None, variant="dpo", settings=sizes, seed=0, device="cpu",
        checkpoint_dir=None, realism=lambda m: 0.9 if m == "unaligned" else realism_of(m),
    )  # fmt: skip
    assert len(set(folders)) == len(folders) == 8  # each read its own folder, made when none given
    assert [f.name for f in folders[:2]] == ["beta500-lr3e-05-steps2", "beta500-lr3e-05-steps4"]
    return chosen, search, seen


def test_the_alignment_search_keeps_the_best_realistic_candidate_and_never_reads_the_test_pairs(
    monkeypatch,
):
    collapsed = {"beta": 2000.0, "lr": 1e-4, "steps": 4}  # the most accurate, but noise
    best = {"beta": 2000.0, "lr": 1e-4, "steps": 2}
    chosen, search, seen = _search(
        monkeypatch,
        accuracy_of=lambda m: {str(collapsed): 0.8, str(best): 0.7}.get(str(m), 0.6),
        realism_of=lambda m: 0.1 if m == collapsed else 0.8,
    )
    assert chosen == best
    assert len(search) == 8 and search["chosen"].sum() == 1 and search["admissible"].sum() == 7
    assert search.loc[search["chosen"], "value"].item() == 0.7
    assert list(search["steps"].iloc[:2]) == [2, 4]  # each run read at its step counts in order
    assert (search["unaligned"] == 0.5).all()
    assert set(seen) == {"fit", "validation"}


def test_a_search_with_no_realistic_candidate_keeps_the_most_accurate_and_says_so(monkeypatch):
    top = {"beta": 500.0, "lr": 1e-4, "steps": 2}
    chosen, search, _ = _search(
        monkeypatch,
        accuracy_of=lambda m: 0.75 if m == top else 0.6,
        realism_of=lambda m: 0.05,
    )
    assert chosen == top and not search["admissible"].any()
    assert search.loc[search["chosen"], "value"].item() == 0.75


def test_a_longer_read_starts_from_the_shorter_ones_checkpoint_and_keeps_its_own(tmp_path):
    shorter = tmp_path / "steps100"
    shorter.mkdir()
    (shorter / "last.safetensors").write_bytes(b"at step 100")
    longer = study._read_folder(tmp_path / "steps200", shorter)
    assert (longer / "last.safetensors").read_bytes() == b"at step 100"
    (longer / "last.safetensors").write_bytes(b"at step 200")
    study._read_folder(longer, shorter)  # a rerun finds the read where it ended
    assert (longer / "last.safetensors").read_bytes() == b"at step 200"
    assert not (tmp_path / "first").exists() or not any((tmp_path / "first").iterdir())
    study._read_folder(tmp_path / "first", None)
    assert not (tmp_path / "first" / "last.safetensors").exists()


def test_the_pooled_search_keeps_each_step_count_apart_with_its_shares_of_seeds():
    rows = [
        dict(modality="skin", variant="dpo", beta=500.0, lr=3e-4, steps=n, seed=seed,
             value=0.5 + n / 1000 + seed / 100, lo=0.4, hi=0.7, n=200, unaligned=0.5,
             admissible=(n == 100 or seed == 0), chosen=(n == 100))
        for n in (100, 200) for seed in range(3)
    ]  # fmt: skip
    pooled = study.pooled_search(pd.DataFrame(rows)).set_index("steps")
    assert list(pooled.index) == [100, 200] and (pooled["n_seeds"] == 3).all()
    assert pooled.loc[100, "value"] == pytest.approx(0.61)
    assert pooled.loc[200, "admissible"] == pytest.approx(1 / 3) and pooled.loc[200, "chosen"] == 0


def test_the_alignment_table_pairs_each_model_with_the_unaligned_one_on_the_same_pairs(monkeypatch):
    pairs = pd.DataFrame({"pair_id": range(6), "sex": ["F"] * 3 + ["M"] * 3})
    hits = {"unaligned": np.array([0.5, 0.5, 0.5, 0.4, 0.6, 0.5]),
            "dpo": np.array([0.75, 0.75, 0.75, 0.4, 0.6, 0.5])}  # fmt: skip
    monkeypatch.setattr(study, "preference_accuracy", lambda model, *a, seed: hits[model])
    table = study.alignment_table({k: k for k in hits}, pairs, None, attribute="sex", seed=0)
    found = table.set_index(["model", "group"])
    assert found.loc[("dpo", "F"), "gain"] == pytest.approx(0.25)
    assert found.loc[("dpo", "F"), "gain_lo"] == pytest.approx(0.25)  # the same gain in each pair
    assert found.loc[("dpo", "M"), "gain"] == 0 and found.loc[("unaligned", "F"), "gain"] == 0
    assert found.loc[("dpo", "F"), "value"] == pytest.approx(0.75) and (found["n"] == 3).all()
