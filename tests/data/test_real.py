import re
import shutil

import numpy as np
import pandas as pd
import pytest

from fairkit import fairness
from fairkit.data import real
from fairkit.data.splits import patient_split

from . import fixtures


def test_fitzpatrick17k_drops_unknown_types_missing_and_corrupt_images(tmp_path):
    expected = fixtures.fitzpatrick17k(tmp_path)
    cohort = real.load("fitzpatrick17k", tmp_path, image_size=16)
    assert len(cohort) == expected["good"]
    assert cohort.images.shape == (5, 3, 16, 16)
    assert cohort.classes == ("benign", "malignant", "non-neoplastic")
    assert list(cohort.meta["skin_type"]) == ["I", "II", "III", "IV", "VI"]
    assert list(cohort.meta["skin_group"]) == ["light", "light", "light", "dark", "dark"]
    assert list(cohort.labels) == [0, 1, 2, 0, 1]


def test_fitzpatrick17k_raise_names_the_bad_rows(tmp_path):
    fixtures.fitzpatrick17k(tmp_path)
    with pytest.raises(real.DatasetError, match=r"3 of 8 rows are unusable: unknown skin type"):
        real.fitzpatrick17k(tmp_path, image_size=16, errors="raise")


def test_missing_dataset_names_the_files_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"'fitzpatrick17k.csv' not found in .*md5hash"):
        real.fitzpatrick17k(tmp_path)
    with pytest.raises(FileNotFoundError, match="ISIC_2019_Training_GroundTruth.csv"):
        real.isic2019(tmp_path)
    with pytest.raises(FileNotFoundError, match="train.csv"):
        real.chexpert(tmp_path)
    with pytest.raises(FileNotFoundError, match="mimic-cxr-2.0.0-metadata.csv"):
        real.mimic_cxr(tmp_path)
    with pytest.raises(FileNotFoundError, match="IXI.xls"):
        real.ixi(tmp_path)
    with pytest.raises(FileNotFoundError, match="folder .* not found"):
        real.ixi(tmp_path / "nowhere")


def test_missing_columns_are_named(tmp_path):
    pd.DataFrame({"md5hash": ["a"], "label": ["x"]}).to_csv(tmp_path / "fitzpatrick17k.csv")
    with pytest.raises(real.DatasetError, match=r"lacks columns \['fitzpatrick_scale'"):
        real.fitzpatrick17k(tmp_path)


def test_isic2019_keeps_missing_demographics_as_unknown(tmp_path):
    expected = fixtures.isic2019(tmp_path)
    cohort = real.isic2019(tmp_path, image_size=16)
    assert len(cohort) == expected["good"]
    assert list(cohort.meta["diagnosis"]) == ["MEL", "NV", "BCC", "NV", "SCC"]
    assert cohort.meta["age"].isna().sum() == 1 and list(cohort.meta["sex"]).count("unknown") == 1
    assert list(cohort.meta["age_group"]) == ["young", "old", "unknown", "young", "old"]
    assert cohort.meta.loc[2, "patient_id"] == "ISIC_0000002"


@pytest.mark.parametrize(("uncertain", "key"), [("zeros", "zeros"), ("drop", "drop")])
def test_chexpert_uncertain_labels_and_frontal_views(tmp_path, uncertain, key):
    root = tmp_path / "CheXpert-v1.0-small"
    root.mkdir()
    expected = fixtures.chexpert(root)
    cohort = real.chexpert(root, uncertain=uncertain, image_size=16)
    assert len(cohort) == expected[key]
    assert cohort.images.shape[1] == 1
    assert set(cohort.meta["patient_id"]) <= {"patient00000", "patient00001", "patient00002"}
    assert cohort.meta["sex"].isin(["F", "M"]).all()


def test_chexpert_uncertain_ones_counts_as_positive(tmp_path):
    root = tmp_path / "CheXpert-v1.0-small"
    root.mkdir()
    fixtures.chexpert(root)
    ones = real.chexpert(root, uncertain="ones", image_size=16)
    zeros = real.chexpert(root, uncertain="zeros", image_size=16)
    assert ones.labels.sum() == zeros.labels.sum() + 1
    with pytest.raises(ValueError, match="unknown CheXpert finding"):
        real.chexpert(root, finding="Broken Heart")


def test_mimic_cxr_joins_race_sex_and_age_per_subject(tmp_path):
    expected = fixtures.mimic_cxr(tmp_path)
    cohort = real.mimic_cxr(tmp_path, image_size=16)
    assert len(cohort) == expected["good"]
    races = cohort.meta.groupby("patient_id")["race"].first().to_dict()
    assert races == expected["races"]
    assert list(cohort.labels) == [1, 0, 0, 0]
    assert set(cohort.meta["view"]) == {"PA", "AP"}


def test_ixi_reads_the_sheet_and_middle_slices(tmp_path):
    expected = fixtures.ixi(tmp_path)
    cohort = real.ixi(tmp_path, image_size=16)
    assert len(cohort) == expected["good"]
    assert list(cohort.meta["patient_id"]) == ["IXI002", "IXI012"]
    assert list(cohort.meta["sex"]) == ["F", "M"]
    assert list(cohort.meta["field_strength"]) == ["1.5T", "3T"]
    assert cohort.images.shape == (2, 1, 16, 16) and cohort.images.std() > 0


def test_patient_split_refuses_patient_ids_lost_after_the_cohort_was_built():
    from fairkit.data import Cohort

    meta = pd.DataFrame({"patient_id": np.arange(60) // 3, "label": np.arange(60) % 2})
    cohort = Cohort(np.zeros((60, 1, 4, 4), np.uint8), meta, "toy", ("a", "b"))
    cohort.meta["patient_id"] = cohort.meta["patient_id"].astype(float).where(meta.index > 1)
    with pytest.raises(ValueError, match=r"patient_id is missing in 2 of 60 rows"):
        patient_split(cohort, val=0.2, test=0.2, seed=0)


def test_patient_split_keeps_each_patient_on_one_side():
    from fairkit.data import Cohort

    n = 300
    meta = pd.DataFrame({"patient_id": np.arange(n) // 3, "label": np.arange(n) % 2})
    cohort = Cohort(np.zeros((n, 1, 4, 4), np.uint8), meta, "toy", ("a", "b"))
    parts = patient_split(cohort, val=0.2, test=0.2, seed=0)
    ids = {k: set(v.meta["patient_id"]) for k, v in parts.items()}
    assert (
        not ids["train"] & ids["test"]
        and not ids["train"] & ids["val"]
        and not ids["val"] & ids["test"]
    )
    assert sum(len(v) for v in parts.values()) == n
    assert len(parts["test"]) == pytest.approx(0.2 * n, abs=6)
    again = patient_split(cohort, val=0.2, test=0.2, seed=0)
    assert again["test"].meta["patient_id"].tolist() == parts["test"].meta["patient_id"].tolist()


def test_missing_protected_attributes_form_an_unknown_group_with_a_logged_count(tmp_path, caplog):
    root = tmp_path / "CheXpert-v1.0-small"
    root.mkdir()
    fixtures.chexpert(root)
    table = pd.read_csv(root / "train.csv")
    table.loc[[0, 1], "Sex"] = "Unknown"  # CheXpert's own word for a missing sex
    table.to_csv(root / "train.csv", index=False)
    with caplog.at_level("WARNING", logger="fairkit.data.real"):
        cohort = real.chexpert(root, image_size=16)
    assert list(cohort.meta["sex"]).count(fairness.UNKNOWN) == 2
    assert "CheXpert: 2 of 5 rows have no sex: kept as the group 'unknown'" in caplog.text


@pytest.mark.parametrize(
    ("name", "folder"),
    [
        ("fitzpatrick17k", "images"),
        ("isic2019", "ISIC_2019_Training_Input"),
        ("chexpert", "train"),
        ("mimic_cxr", "files"),
    ],
)
def test_a_missing_image_folder_is_named_with_the_layout_expected(tmp_path, name, folder):
    root = tmp_path / "CheXpert-v1.0-small" if name == "chexpert" else tmp_path
    root.mkdir(exist_ok=True)
    getattr(fixtures, name)(root)
    shutil.rmtree(root / folder)
    with pytest.raises(FileNotFoundError, match=rf"image folder .*{folder} not found; expected"):
        real.load(name, root, image_size=16)


def test_a_table_with_a_header_and_no_rows_is_refused(tmp_path):
    fixtures.fitzpatrick17k(tmp_path)
    csv = tmp_path / "fitzpatrick17k.csv"
    pd.read_csv(csv).iloc[:0].to_csv(csv, index=False)
    with pytest.raises(real.DatasetError, match=r"fitzpatrick17k.csv has a header but no rows"):
        real.fitzpatrick17k(tmp_path, image_size=16)


def test_a_zero_byte_table_is_named(tmp_path):
    fixtures.fitzpatrick17k(tmp_path)
    (tmp_path / "fitzpatrick17k.csv").write_bytes(b"")
    with pytest.raises(
        real.DatasetError, match=r"fitzpatrick17k.csv is empty \(0 bytes, no header\)"
    ):
        real.fitzpatrick17k(tmp_path, image_size=16)


def test_a_cohort_with_no_usable_row_is_an_error_even_when_skipping(tmp_path):
    fixtures.fitzpatrick17k(tmp_path)
    for image in (tmp_path / "images").iterdir():
        image.unlink()
    with pytest.raises(real.DatasetError, match=r"no usable rows: 8 of 8 rows are unusable"):
        real.fitzpatrick17k(tmp_path, image_size=16, errors="skip")


@pytest.mark.parametrize(
    ("name", "size"), list(zip(sorted(real.ADAPTERS), [0, -16, 16.0, True, "16"], strict=True))
)
def test_a_bad_image_size_is_refused_before_any_file_is_read(tmp_path, name, size):
    with pytest.raises(ValueError, match=rf"image_size must be a whole number > 0; got {size!r}"):
        real.load(name, tmp_path / "nowhere", image_size=size)


def test_fitzpatrick17k_labels_differing_in_case_or_spaces_are_normalised_and_counted(
    tmp_path, caplog
):
    fixtures.fitzpatrick17k(tmp_path)

    def shout(table):
        table.loc[0, "three_partition_label"] = "  Benign "
        table.loc[1, "three_partition_label"] = "MALIGNANT"
        table.loc[1, "label"] = "  Melanoma "
        return table

    fixtures.rewrite(tmp_path / "fitzpatrick17k.csv", shout)
    with caplog.at_level("WARNING", logger="fairkit.data.real"):
        cohort = real.fitzpatrick17k(tmp_path, image_size=16)
    assert list(cohort.labels) == [0, 1, 2, 0, 1]
    assert cohort.meta.loc[1, "condition"] == "melanoma"
    assert (
        "Fitzpatrick17k: lower-cased and stripped 2 three_partition_label values "
        "(e.g. '  Benign ' as 'benign')" in caplog.text
    )
    assert (
        "lower-cased and stripped 1 label values (e.g. '  Melanoma ' as 'melanoma')" in caplog.text
    )


def test_fitzpatrick17k_labels_outside_the_classes_are_named_with_their_counts(tmp_path, caplog):
    fixtures.fitzpatrick17k(tmp_path)

    def unknown(table):
        table.loc[[0, 3], "three_partition_label"] = "cancer"
        table.loc[1, "three_partition_label"] = None
        return table

    fixtures.rewrite(tmp_path / "fitzpatrick17k.csv", unknown)
    outside = (
        r"Fitzpatrick17k: 3 of 8 rows have a three_partition_label outside benign, malignant, "
        r"non-neoplastic: 'cancer': 2, nan: 1"
    )
    with pytest.raises(real.DatasetError, match=outside):
        real.fitzpatrick17k(tmp_path, image_size=16, errors="raise")
    with caplog.at_level("WARNING", logger="fairkit.data.real"):
        cohort = real.fitzpatrick17k(tmp_path, image_size=16)
    assert list(cohort.meta["skin_type"]) == ["III", "VI"] and list(cohort.labels) == [2, 1]
    assert "'cancer': 2, nan: 1; skipped" in caplog.text


def test_fitzpatrick17k_drops_exact_duplicates_and_refuses_conflicting_ones(tmp_path, caplog):
    fixtures.fitzpatrick17k(tmp_path)
    csv = tmp_path / "fitzpatrick17k.csv"
    fixtures.rewrite(csv, lambda table: pd.concat([table, table.iloc[[0, 0]]]))
    with caplog.at_level("WARNING", logger="fairkit.data.real"):
        cohort = real.fitzpatrick17k(tmp_path, image_size=16)
    assert len(cohort) == 5
    assert "Fitzpatrick17k: dropped 2 exact repeats of rows of fitzpatrick17k.csv" in caplog.text
    fixtures.rewrite(
        csv,
        lambda table: pd.concat([table, table.iloc[[1]].assign(three_partition_label="benign")]),
    )
    with pytest.raises(
        real.DatasetError,
        match=rf"fitzpatrick17k.csv has conflicting rows \(three_partition_label differs\) "
        rf"for 1 md5hash: {1:032x}; expected one row per md5hash",
    ):
        real.fitzpatrick17k(tmp_path, image_size=16)


@pytest.mark.parametrize(
    ("table", "change", "differs"),
    [
        ("GroundTruth", {"MEL": "0.0", "NV": "1.0"}, "MEL, NV"),
        ("Metadata", {"age_approx": "31"}, "age_approx"),
    ],
)
def test_isic2019_duplicate_images_are_dropped_when_exact_and_refused_when_conflicting(
    tmp_path, caplog, table, change, differs
):
    fixtures.isic2019(tmp_path)
    csv = tmp_path / f"ISIC_2019_Training_{table}.csv"
    fixtures.rewrite(csv, lambda t: pd.concat([t, t.iloc[[1]]]))
    with caplog.at_level("WARNING", logger="fairkit.data.real"):
        cohort = real.isic2019(tmp_path, image_size=16)
    assert list(cohort.meta["diagnosis"]) == ["MEL", "NV", "BCC", "NV", "SCC"]
    assert f"dropped 1 exact repeats of rows of {csv.name}" in caplog.text
    fixtures.rewrite(csv, lambda t: pd.concat([t, t.iloc[[0]].assign(**change)]))
    with pytest.raises(
        real.DatasetError,
        match=rf"ISIC 2019: {csv.name} has conflicting rows \({differs} differs?\) "
        r"for 1 image: ISIC_0000000; expected one row per image",
    ):
        real.isic2019(tmp_path, image_size=16)


def test_isic2019_ground_truth_other_than_one_1_and_the_rest_0_is_no_diagnosis(tmp_path):
    fixtures.isic2019(tmp_path)

    def soft(table):
        table.loc[0, ["MEL", "NV"]] = "0.5"
        table.loc[3, "NV"] = "yes"
        return table

    fixtures.rewrite(tmp_path / "ISIC_2019_Training_GroundTruth.csv", soft)
    cohort = real.isic2019(tmp_path, image_size=16)
    assert list(cohort.meta["diagnosis"]) == ["NV", "BCC", "SCC"]
    with pytest.raises(real.DatasetError, match=r"3 of 6 rows are unusable: not exactly one"):
        real.isic2019(tmp_path, image_size=16, errors="raise")


def test_chexpert_paths_without_a_patient_folder_are_refused_by_name(tmp_path):
    root = tmp_path / "CheXpert-v1.0-small"
    root.mkdir()
    fixtures.chexpert(root)
    fixtures.rewrite(
        root / "train.csv",
        lambda t: t.assign(Path=t["Path"].str.replace("patient00001", "anonymous")),
    )
    with pytest.raises(
        real.DatasetError,
        match=r"CheXpert: 2 of 6 frontal rows have no patient<digits> folder in Path, so no "
        r"patient id for patient-level splits: CheXpert-v1.0-small/train/anonymous/study1/"
        r"view1_frontal.jpg, .*; expected train/patient<digits>/study<n>/",
    ):
        real.chexpert(root, image_size=16)


def test_chexpert_finding_values_other_than_1_0_minus_1_or_blank_are_named(tmp_path, caplog):
    root = tmp_path / "CheXpert-v1.0-small"
    root.mkdir()
    fixtures.chexpert(root)

    def odd(table):
        table.loc[0, "Pleural Effusion"] = "yes"
        table.loc[1, "Pleural Effusion"] = "2"
        return table

    fixtures.rewrite(root / "train.csv", odd)
    outside = (
        r"CheXpert: 2 of 6 rows have a Pleural Effusion value other than 1, 0, -1 or blank: "
        r"'2': 1, 'yes': 1"
    )
    with pytest.raises(real.DatasetError, match=outside):
        real.chexpert(root, image_size=16, errors="raise")
    with caplog.at_level("WARNING", logger="fairkit.data.real"):
        cohort = real.chexpert(root, image_size=16)
    assert len(cohort) == 3 and list(cohort.labels) == [0, 0, 1]
    assert "'2': 1, 'yes': 1; skipped" in caplog.text


@pytest.mark.parametrize("threshold", ["60", float("nan"), True, None])
def test_a_bad_age_threshold_is_refused_before_any_file_is_read(tmp_path, threshold):
    message = rf"age_threshold must be a finite number; got {re.escape(repr(threshold))}"
    for name in ("isic2019", "chexpert", "mimic_cxr", "ixi"):
        with pytest.raises(ValueError, match=message):
            real.load(name, tmp_path / "nowhere", age_threshold=threshold)


def test_bad_errors_and_uncertain_options_are_refused_before_any_file_is_read(tmp_path):
    with pytest.raises(ValueError, match=r"errors must be 'skip' or 'raise'; got \['skip'\]"):
        real.ixi(tmp_path / "nowhere", errors=["skip"])
    for name in ("chexpert", "mimic_cxr"):
        with pytest.raises(ValueError, match=r"uncertain must be zeros, ones or drop; got 'maybe'"):
            real.load(name, tmp_path / "nowhere", uncertain="maybe")


def test_mimic_cxr_repeated_studies_are_dropped_when_exact_and_refused_when_conflicting(
    tmp_path, caplog
):
    fixtures.mimic_cxr(tmp_path)
    labels = tmp_path / "mimic-cxr-2.0.0-chexpert.csv.gz"
    fixtures.rewrite(labels, lambda t: pd.concat([t, t.iloc[[0]]]))
    with caplog.at_level("WARNING", logger="fairkit.data.real"):
        cohort = real.mimic_cxr(tmp_path, image_size=16)
    assert list(cohort.labels) == [1, 0, 0, 0]
    assert "dropped 1 exact repeats of rows of mimic-cxr-2.0.0-chexpert.csv.gz" in caplog.text
    fixtures.rewrite(
        labels, lambda t: pd.concat([t, t.iloc[[0]].assign(**{"Pleural Effusion": "0.0"})])
    )
    with pytest.raises(
        real.DatasetError,
        match=r"chexpert.csv.gz has conflicting rows \(Pleural Effusion differs\) for 1 "
        r"subject_id/study_id: 10000001/50000001",
    ):
        real.mimic_cxr(tmp_path, image_size=16)


@pytest.mark.parametrize(
    ("extra", "ages"), [([12, 1, 175, 70, 38.8], [35.8, 38.8]), ([2, 2, 164, 58, 53.8], None)]
)
def test_ixi_drops_exact_repeats_and_refuses_conflicting_demographics(
    tmp_path, caplog, extra, ages
):
    fixtures.ixi(tmp_path, extra_rows=[extra])
    if ages is None:
        with pytest.raises(
            real.DatasetError,
            match=r"IXI: IXI.xls has conflicting rows \(AGE differs\) for 1 IXI_ID: 2; expected",
        ):
            real.ixi(tmp_path, image_size=16)
        return
    with caplog.at_level("WARNING", logger="fairkit.data.real"):
        assert list(real.ixi(tmp_path, image_size=16).meta["age"]) == ages
    assert "IXI: dropped 1 exact repeats of rows of IXI.xls" in caplog.text


def test_chexpert_blank_paths_are_refused_by_name(tmp_path):
    root = tmp_path / "CheXpert-v1.0-small"
    root.mkdir()
    fixtures.chexpert(root)

    def blank(table):
        table.loc[[0, 1], "Path"] = None
        return table

    fixtures.rewrite(root / "train.csv", blank)
    with pytest.raises(
        real.DatasetError, match=r"train.csv has conflicting rows \(.*\) for 1 Path: nan;"
    ):
        real.chexpert(root, image_size=16)


def test_ages_that_are_not_numbers_are_named_with_their_counts(tmp_path, caplog):
    root = tmp_path / "CheXpert-v1.0-small"
    root.mkdir()
    fixtures.chexpert(root)

    def text(table):
        table.loc[[0, 1], "Age"] = "old"
        return table

    fixtures.rewrite(root / "train.csv", text)
    with caplog.at_level("WARNING", logger="fairkit.data.real"):
        cohort = real.chexpert(root, image_size=16)
    assert cohort.meta["age"].isna().sum() == 2
    assert "CheXpert: 2 of 6 Age values are not numbers ('old': 2): kept as no age" in caplog.text
