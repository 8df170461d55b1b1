"""Small folders in the real datasets' layouts, bad rows included, for the adapters' tests."""

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image


def _jpeg(path: Path, rng, channels=3, size=24) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size, size, 3) if channels == 3 else (size, size)
    Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(path, format="JPEG")


def _corrupt(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")


def rewrite(path: Path, change) -> None:
    """Replace a fixture table by ``change(table)``; read as text so hashes keep leading zeros."""
    change(pd.read_csv(path, dtype=str)).to_csv(path, index=False)


def fitzpatrick17k(root: Path) -> dict:
    """8 rows: 5 good, one unknown skin type, one missing file, one corrupt JPEG."""
    rng = np.random.default_rng(0)
    scales = [1, 2, 3, 4, 6, -1, 5, 2]
    hashes = [f"{i:032x}" for i in range(len(scales))]
    pd.DataFrame(
        {
            "md5hash": hashes,
            "fitzpatrick_scale": scales,
            "fitzpatrick_centaur": scales,
            "label": ["psoriasis"] * len(scales),
            "nine_partition_label": ["inflammatory"] * len(scales),
            "three_partition_label": ["benign", "malignant", "non-neoplastic"] * 2 + ["benign"] * 2,
            "qc": [""] * len(scales),
            "url": [""] * len(scales),
        }
    ).to_csv(root / "fitzpatrick17k.csv", index=False)
    for i, h in enumerate(hashes):
        if i == 6:
            continue  # missing file
        if i == 7:
            _corrupt(root / "images" / f"{h}.jpg")
        else:
            _jpeg(root / "images" / f"{h}.jpg", rng)
    return {"good": 5, "rows": 8}


def isic2019(root: Path) -> dict:
    """6 rows (5 good, one missing file); one row lacks age and sex."""
    rng = np.random.default_rng(1)
    images = [f"ISIC_{i:07d}" for i in range(6)]
    truth = pd.DataFrame(
        0.0, index=range(6), columns=["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]
    )
    for i, cls in enumerate(["MEL", "NV", "BCC", "NV", "SCC", "MEL"]):
        truth.loc[i, cls] = 1.0
    truth.insert(0, "image", images)
    truth.to_csv(root / "ISIC_2019_Training_GroundTruth.csv", index=False)
    pd.DataFrame(
        {
            "image": images,
            "age_approx": [30, 70, None, 55, 85, 45],
            "anatom_site_general": ["back", "face", "", "torso", "head/neck", "back"],
            "lesion_id": ["L1", "L1", None, "L3", "L4", "L5"],
            "sex": ["female", "male", None, "female", "male", "female"],
        }
    ).to_csv(root / "ISIC_2019_Training_Metadata.csv", index=False)
    for name in images[:-1]:
        _jpeg(root / "ISIC_2019_Training_Input" / f"{name}.jpg", rng)
    return {"good": 5, "rows": 6}


def chexpert(root: Path) -> dict:
    """root is .../CheXpert-v1.0-small: 6 frontal rows (one uncertain, one corrupt), 1 lateral."""
    rng = np.random.default_rng(2)
    rows = []
    for i, (effusion, view) in enumerate(
        [
            (1, "Frontal"),
            (0, "Frontal"),
            (None, "Frontal"),
            (-1, "Frontal"),
            (1, "Frontal"),
            (0, "Frontal"),
            (1, "Lateral"),
        ]
    ):
        rel = f"train/patient{i // 2:05d}/study1/view{i % 2 + 1}_{view.lower()}.jpg"
        rows.append(
            {
                "Path": f"{root.name}/{rel}",
                "Sex": ["Female", "Male"][i % 2],
                "Age": 40 + 7 * i,
                "Frontal/Lateral": view,
                "AP/PA": "AP" if view == "Frontal" else None,
                **{f: None for f in ["No Finding", "Cardiomegaly"]},
                "Pleural Effusion": effusion,
            }
        )
        (_corrupt if i == 5 else lambda p: _jpeg(p, rng, channels=1))(root / rel)
    pd.DataFrame(rows).to_csv(root / "train.csv", index=False)
    return {"zeros": 5, "drop": 4, "frontal": 6}


def mimic_cxr(root: Path) -> dict:
    """3 subjects, 5 frontal images (one missing) and one lateral; races from admissions."""
    rng = np.random.default_rng(3)
    meta = pd.DataFrame(
        {
            "dicom_id": [f"d{i}" for i in range(6)],
            "subject_id": [10000001, 10000001, 11000002, 11000002, 12000003, 12000003],
            "study_id": [50000001, 50000001, 50000002, 50000003, 50000004, 50000005],
            "ViewPosition": ["PA", "LATERAL", "AP", "PA", "AP", "PA"],
        }
    )
    meta.to_csv(root / "mimic-cxr-2.0.0-metadata.csv.gz", index=False)
    pd.DataFrame(
        {
            "subject_id": [10000001, 11000002, 11000002, 12000003, 12000003],
            "study_id": [50000001, 50000002, 50000003, 50000004, 50000005],
            "Pleural Effusion": [1.0, 0.0, -1.0, None, 1.0],
        }
    ).to_csv(root / "mimic-cxr-2.0.0-chexpert.csv.gz", index=False)
    (root / "hosp").mkdir()
    pd.DataFrame(
        {
            "subject_id": [10000001, 11000002, 12000003],
            "gender": ["F", "M", "F"],
            "anchor_age": [71, 45, 60],
        }
    ).to_csv(root / "hosp" / "patients.csv.gz", index=False)
    pd.DataFrame(
        {
            "subject_id": [10000001, 10000001, 11000002, 12000003],
            "race": [
                "BLACK/AFRICAN AMERICAN",
                "UNKNOWN",
                "WHITE - OTHER EUROPEAN",
                "ASIAN - CHINESE",
            ],
        }
    ).to_csv(root / "hosp" / "admissions.csv.gz", index=False)
    for d, s, st, _view in meta.itertuples(index=False):
        if d != "d5":
            _jpeg(
                root / "files" / f"p{str(s)[:2]}" / f"p{s}" / f"s{st}" / f"{d}.jpg", rng, channels=1
            )
    return {"good": 4, "races": {"10000001": "Black", "11000002": "White", "12000003": "Asian"}}


def ixi(root: Path, extra_rows=()) -> dict:
    """3 T1 volumes (one corrupt), one subject missing from the sheet; ``extra_rows`` appended."""
    import nibabel as nib
    import xlwt

    book = xlwt.Workbook()
    sheet = book.add_sheet("Table")
    header = ["IXI_ID", "SEX_ID (1=m, 2=f)", "HEIGHT", "WEIGHT", "AGE"]
    for j, name in enumerate(header):
        sheet.write(0, j, name)
    for i, row in enumerate(
        [[2, 2, 164, 58, 35.8], [12, 1, 175, 70, 38.8], [13, 1, 182, 80, 46.7], *extra_rows], 1
    ):
        for j, value in enumerate(row):
            sheet.write(i, j, value)
    book.save(str(root / "IXI.xls"))
    folder = root / "IXI-T1"
    folder.mkdir()
    rng = np.random.default_rng(4)
    for name in ["IXI002-Guys-0828-T1", "IXI012-HH-1211-T1", "IXI099-IOP-0001-T1"]:
        volume = rng.random((20, 24, 16)).astype(np.float32)
        nib.save(nib.Nifti1Image(volume, np.eye(4)), str(folder / f"{name}.nii.gz"))
    (folder / "IXI013-HH-1212-T1.nii.gz").write_bytes(b"not a nifti")
    return {"good": 2, "rows": 4}
