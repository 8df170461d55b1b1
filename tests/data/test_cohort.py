import gc
import warnings

import numpy as np
import pandas as pd
import pytest

from fairkit.data import Cohort


def _cohort():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 3, 8, 8), dtype=np.uint8)
    meta = pd.DataFrame({"label": [0, 1, 1, 0], "skin_group": ["dark", "light", "dark", "light"]})
    return Cohort(images, meta, "skin", ("benign", "malignant"))


def test_saved_cohort_loads_back_equal(tmp_path):
    cohort = _cohort()
    loaded = Cohort.load(cohort.save(tmp_path / "cohort"), mmap=False)
    assert np.array_equal(loaded.images, cohort.images)
    pd.testing.assert_frame_equal(loaded.meta, cohort.meta)
    assert (loaded.modality, loaded.classes) == (cohort.modality, cohort.classes)


def test_save_that_fails_midway_leaves_no_folder_and_no_leftovers(tmp_path, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", disk_full)
    with pytest.raises(OSError, match="disk full"):
        _cohort().save(tmp_path / "cohort")
    assert list(tmp_path.iterdir()) == []


def test_save_closes_every_file_it_opens(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        _cohort().save(tmp_path / "cohort")
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


def test_save_refuses_a_folder_that_holds_a_cohort(tmp_path):
    path = _cohort().save(tmp_path / "cohort")
    with pytest.raises(FileExistsError, match="cohort"):
        _cohort().subset([0, 1]).save(path)
    assert len(Cohort.load(path)) == 4


@pytest.mark.parametrize("label", [-1, 2, 0.5, np.nan])
def test_a_label_that_names_no_class_is_refused(label):
    images = np.zeros((2, 1, 4, 4), np.uint8)
    meta = pd.DataFrame({"label": [0, label]})
    with pytest.raises(ValueError, match=r"label must be 0 to 1 \(an index into \('a', 'b'\)\)"):
        Cohort(images, meta, "toy", ("a", "b"))


def test_rows_without_a_patient_id_are_refused_naming_the_column():
    images = np.zeros((4, 1, 4, 4), np.uint8)
    meta = pd.DataFrame({"label": [0, 1, 0, 1], "patient_id": ["p1", None, "p2", np.nan]})
    with pytest.raises(ValueError, match=r"2 of 4 rows have no patient_id \(rows \[1, 3\]\)"):
        Cohort(images, meta, "toy", ("a", "b"))


def test_relabel_refuses_a_column_with_missing_values():
    cohort = _cohort()
    cohort.meta.loc[2, "skin_group"] = None
    with pytest.raises(ValueError, match=r"skin_group has no value in 1 of 4 rows \(rows \[2\]\)"):
        cohort.relabel("skin_group")


def test_binarize_refuses_a_single_class_name_given_as_text():
    with pytest.raises(TypeError, match=r"positive must be a list of class names; got 'malignant'"):
        _cohort().binarize("malignant", names=("no", "yes"))
