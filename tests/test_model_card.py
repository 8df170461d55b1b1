import json
import warnings

import numpy as np
import pandas as pd
import pytest

from fairkit import fairness, model_card
from fairkit.data import synth
from fairkit.studies import fairgen as study
from fairkit.studies.fairgen import group_metrics

ATTRIBUTE = "skin_group"
CLASSES = ("benign", "malignant")
PROVENANCE = {"seed": 0, "mode": "smoke", "commit": "abc123"}
KEY = ["split", "group", "metric"]


def predictions(n, seed, *, dark_random=False, equal=False):
    """A binary predictions table: light well predicted; dark random or a copy of light."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 2 * n)
    s = np.clip(0.6 * y + 0.4 * rng.random(2 * n), 0, 1)
    if dark_random:
        s[n:] = rng.random(n)
    if equal:  # the dark half repeats the light half exactly: every gap is 0
        y[n:], s[n:] = y[:n], s[:n]
    return pd.DataFrame(
        {
            "y_true": y,
            "y_pred": (s >= 0.5).astype(int),
            "score_benign": 1 - s,
            "score_malignant": s,
            ATTRIBUTE: ["light"] * n + ["dark"] * n,
            "patient_id": np.arange(2 * n),
        }
    )


def make_report(table, seed=0):
    return fairness.report(
        table, groups=[ATTRIBUTE], thresholds=0.5, n_boot=200, seed=seed, intersections=False
    )


@pytest.fixture(scope="module")
def train():
    task = synth.BINARY_TASKS["skin"]
    cohort = synth.generate("skin", 64, seed=0, image_size=16)
    return cohort.binarize(list(task.positive), names=task.names)


@pytest.fixture(scope="module")
def reports():
    return {
        "test": make_report(predictions(200, 1, dark_random=True)),
        "external": make_report(predictions(150, 2, dark_random=True), seed=1),
    }


def card_of(reports, train, /, **changes):
    kwargs = dict(
        reports=reports,
        attribute=ATTRIBUTE,
        train=train,
        positive="malignant",
        modality="skin",
        intended_use="Research on group fairness of lesion classifiers.",
        provenance=PROVENANCE,
    )
    return model_card.model_card("ssl (fine_tune, same_site)", **{**kwargs, **changes})


@pytest.fixture(scope="module")
def card(reports, train):
    return card_of(reports, train)


def test_card_rows_are_the_report_rows_unrounded(card, reports):
    table = model_card.card_metrics(card)
    assert list(dict.fromkeys(table["split"])) == ["test", "external"]
    for split, rep in reports.items():
        rows = table[table["split"] == split]
        by = rep.by_group[rep.by_group["metric"].isin(model_card.METRICS)]
        gaps = rep.gaps[rep.gaps["metric"].isin(model_card.GAP_METRICS)]
        assert len(rows) == len(by) + len(gaps) == 2 * 3 + 5
        for r in by.itertuples():
            mine = rows[(rows["group"] == r.group) & (rows["metric"] == r.metric)]
            assert (mine["value"].item(), mine["lo"].item(), mine["hi"].item()) == (
                r.value,
                r.lo,
                r.hi,
            )
            assert mine["n"].item() == r.n
        for r in gaps.itertuples():
            mine = rows[(rows["group"] == "all") & (rows["metric"] == r.metric)]
            assert (mine["value"].item(), mine["lo"].item(), mine["hi"].item()) == (
                r.value,
                r.lo,
                r.hi,
            )


def test_card_json_matches_the_chapters_metrics_csv(card, reports, tmp_path):
    # the way a chapter writes metrics.csv: group_metrics per split, split and modality added
    table = pd.concat(
        [
            group_metrics({card.model: rep}, attribute=ATTRIBUTE).assign(modality="skin", split=s)
            for s, rep in reports.items()
        ],
        ignore_index=True,
    )
    table.to_csv(tmp_path / "metrics.csv", index=False)
    csv = pd.read_csv(tmp_path / "metrics.csv")
    _, json_path = model_card.write_card(card, tmp_path / "cards")
    mine = model_card.card_metrics(model_card.read_card(json_path))
    joined = csv.merge(mine, on=KEY, suffixes=("_csv", "_card"), validate="one_to_one")
    gaps = len(study.GAPS)  # every row of metrics.csv is on the card: per group, then the gaps
    assert len(joined) == len(csv) == 2 * (2 * 3 + gaps)
    for column in ("value", "lo", "hi"):
        np.testing.assert_allclose(
            joined[f"{column}_card"], joined[f"{column}_csv"], rtol=0, atol=1e-12
        )


def test_a_clearly_worse_group_gives_a_known_accuracy_gap(card):
    known = {(g["metric"], g["split"]) for g in card.known_gaps}
    assert ("gap_accuracy", "test") in known and ("gap_accuracy", "external") in known
    assert all(g["lo"] > 0 for g in card.known_gaps)
    assert not any(m.startswith("worst_") for m, _ in known)  # a worst-group value is no gap
    assert "gap_accuracy (test)" in card.to_markdown()


def test_equal_groups_give_no_known_gap(train):
    equal = {"test": make_report(predictions(150, 3, equal=True))}
    card = card_of(equal, train)
    assert card.known_gaps == []
    text = card.to_markdown()
    assert model_card.NO_GAPS.capitalize() in text
    assert "No external-site result" in text
    assert any("external-site" in c for c in card.caveats)


def test_markdown_has_every_section_group_and_the_external_site(card, train):
    text = card.to_markdown()
    for heading in model_card.SECTIONS:
        assert f"## {heading}" in text
    assert "### test" in text and "### external" in text
    for group in ("light", "dark"):
        assert f"| {group} |" in text
    assert "benign vs malignant" in text and "commit: abc123" in text
    external = text.split("## External site")[1].split("## Caveats")[0]
    assert "| dark | accuracy |" in external  # the test -> external table
    test_rows = card.metrics.query("split == 'test' and group == 'dark' and metric == 'auroc'")
    r = test_rows.iloc[0]
    assert f"{r.value:.3f} [{r.lo:.3f}, {r.hi:.3f}]" in text
    composition = card.training["composition"]
    assert {c["group"] for c in composition} == set(train.meta[ATTRIBUTE])
    assert sum(c["n"] for c in composition) == card.training["n"] == len(train)
    dark = train.meta[ATTRIBUTE] == "dark"
    prevalence = next(c["prevalence"] for c in composition if c["group"] == "dark")
    assert prevalence == pytest.approx(train.labels[dark].mean())


def test_json_round_trips(card, tmp_path):
    md_path, json_path = model_card.write_card(card, tmp_path)
    assert md_path.name == "ssl-fine_tune-same_site.md" and json_path.suffix == ".json"
    assert md_path.read_text() == card.to_markdown()
    assert model_card.read_card(json_path) == card.to_dict()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([md_path.name, json_path.name])


def test_nan_metrics_are_null_in_json_and_nan_back(train, tmp_path):
    table = predictions(100, 4)
    table.loc[table[ATTRIBUTE] == "dark", "y_true"] = 0  # one class only: its AUROC is NaN
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fairness.GroupWarning)
        card = card_of({"test": make_report(table)}, train)
    _, json_path = model_card.write_card(card, tmp_path)
    assert "NaN" not in json_path.read_text()
    back = model_card.card_metrics(model_card.read_card(json_path))
    auroc = back.query("group == 'dark' and metric == 'auroc'")
    assert auroc["value"].isna().all()
    assert "undefined" in card.to_markdown()
    assert any("auroc of dark on test is undefined" in c for c in card.caveats)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"reports": {"external": None}}, "'test' split; got splits \\['external'\\]"),
        ({"attribute": "ethnicity"}, "no column 'ethnicity'"),
        ({"positive": "melanoma"}, "'melanoma' is not a class"),
        ({"metrics": ("accuracy", "kappa")}, "no per-group metric \\['kappa'\\]"),
        ({"gap_metrics": ("gap_kappa",)}, "no gap metric \\['gap_kappa'\\]"),
    ],
)
def test_bad_inputs_are_refused(reports, train, changes, match):
    with pytest.raises(ValueError, match=match):
        card_of(reports, train, **changes)


def test_an_attribute_missing_from_a_report_is_refused(reports, train):
    with pytest.raises(ValueError, match="test report has no attribute 'sex'"):
        card_of(reports, train, attribute="sex")  # sex is in the cohort, not in the report


def test_a_json_that_is_no_card_is_refused(card, tmp_path):
    data = card.to_dict()
    del data["known_gaps"], data["provenance"]
    path = tmp_path / "other.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="missing keys known_gaps, provenance"):
        model_card.read_card(path)
    path.write_text(json.dumps({**card.to_dict(), "metrics": [{"split": "test"}]}))
    with pytest.raises(ValueError, match="missing \\['attribute', 'group'"):
        model_card.read_card(path)


def test_a_failed_serialisation_writes_nothing(card, tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(json, "dumps", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        model_card.write_card(card, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_keeps_the_old_card_whole(card, train, tmp_path, monkeypatch):
    md_path, json_path = model_card.write_card(card, tmp_path)
    old = md_path.read_bytes(), json_path.read_bytes()
    newer = card_of({"test": make_report(predictions(150, 3, equal=True))}, train)
    original = model_card.write_atomic

    def fail_on_markdown(path, write):
        if str(path).endswith(".md"):
            return original(path, lambda tmp: (tmp.write_text("half"), 1 / 0))
        return original(path, write)

    monkeypatch.setattr(model_card, "write_atomic", fail_on_markdown)
    with pytest.raises(ZeroDivisionError):
        model_card.write_card(newer, tmp_path)
    assert (md_path.read_bytes(), json_path.read_bytes()) == old  # the JSON was put back
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([md_path.name, json_path.name])
