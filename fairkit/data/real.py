"""Adapters for the real datasets, with the same Cohort interface as the generators.

Nothing is downloaded: each adapter reads a folder in the dataset's published layout and says
which files it expected when they are missing. Rows whose image is missing or unreadable, whose
label is none of the task's, or whose protected attribute is unknown where the study needs it,
are dropped with a logged count (``errors="skip"``) or refused with the first offending rows
named (``errors="raise"``). A row repeated exactly is dropped with a logged count; rows of one
id that disagree are refused, naming the ids. Other
missing protected attributes (sex, age group, race) are kept as the group ``unknown``, with a
logged count, as ``fairness.report`` reads them too. A cohort is never empty: no usable row is
an error.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from fairkit.data.cohort import Cohort
from fairkit.fairness import UNKNOWN

log = logging.getLogger(__name__)

ROMAN = {1: "I", 2: "II", 3: "III", 4: "IV", 5: "V", 6: "VI"}
ISIC_CLASSES = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC")
CHEXPERT_FINDINGS = (
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion",
    "Edema", "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion",
    "Pleural Other", "Fracture", "Support Devices",
)  # fmt: skip
IXI_FIELD = {"Guys": "1.5T", "HH": "3T", "IOP": "1.5T"}
CHEXPERT_PATIENT = re.compile(r"(?:^|/)(patient\d+)/")
UNCERTAIN = {"zeros": 0.0, "ones": 1.0, "drop": np.nan}
PROTECTED = ("sex", "age_group", "race", "skin_type", "skin_group")


class DatasetError(ValueError):
    """A dataset folder that does not match the layout the adapter expects."""


# --------------------------------------------------------------------------- shared helpers


def _check_options(*, image_size, errors: str) -> None:
    """Refuse a bad ``image_size`` or ``errors`` before any file is read."""
    if (
        isinstance(image_size, bool)
        or not isinstance(image_size, int | np.integer)
        or image_size <= 0
    ):
        raise ValueError(f"image_size must be a whole number > 0; got {image_size!r}")
    if errors not in ("skip", "raise"):
        raise ValueError(f"errors must be 'skip' or 'raise'; got {errors!r}")


def _check_threshold(age_threshold) -> None:
    """Refuse an ``age_threshold`` that cannot split ages into young and old."""
    if (
        isinstance(age_threshold, bool)
        or not isinstance(age_threshold, int | float | np.integer | np.floating)
        or not np.isfinite(age_threshold)
    ):
        raise ValueError(f"age_threshold must be a finite number; got {age_threshold!r}")


def _check_uncertain(uncertain: str) -> None:
    """Refuse an uncertain-label policy other than the paper's U-Zeros, U-Ones or dropping."""
    if uncertain not in tuple(UNCERTAIN):
        raise ValueError(f"uncertain must be zeros, ones or drop; got {uncertain!r}")


def _image_folder(folder: Path, dataset: str, expected: str) -> None:
    """Refuse a dataset whose image folder is missing (else every row would be skipped)."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{dataset}: image folder {folder} not found; expected {expected}")


def _find(root: Path, dataset: str, names: Sequence[str], expected: str) -> Path:
    """Return the first of ``names`` that exists under ``root``, else a clear error."""
    if not root.is_dir():
        raise FileNotFoundError(f"{dataset}: folder {root} not found; expected {expected}")
    for name in names:
        if (root / name).exists():
            return root / name
    raise FileNotFoundError(f"{dataset}: {names[0]!r} not found in {root}; expected {expected}")


def _read_table(
    path: Path, dataset: str, columns: Sequence[str], text: Sequence[str] = ()
) -> pd.DataFrame:
    """Read a CSV (plain or gzipped) or Excel sheet and check that it has ``columns``.

    Identifier columns named in ``text`` are read as text, so that a hash made of digits
    keeps its leading zeros.
    """
    if path.suffix in {".xls", ".xlsx"}:
        table = pd.read_excel(path, engine="calamine")
    else:
        try:
            table = pd.read_csv(path, low_memory=False, dtype={c: str for c in text})
        except pd.errors.EmptyDataError:
            raise DatasetError(
                f"{dataset}: {path} is empty ({path.stat().st_size} bytes, no header); "
                f"expected columns {', '.join(columns)}"
            ) from None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DatasetError(
            f"{dataset}: {path.name} lacks columns {missing}; found {list(table.columns)}"
        )
    if table.empty:
        raise DatasetError(f"{dataset}: {path} has a header but no rows; expected one per image")
    return table


def _counts(values: pd.Series) -> str:
    """Each value with its number of rows, most frequent first: ``'cancer': 2, nan: 1``."""
    counts = sorted(values.value_counts(dropna=False).items(), key=lambda c: (-c[1], repr(c[0])))
    return ", ".join(f"{value!r}: {n}" for value, n in counts)


def _lowercase(values: pd.Series, *, dataset: str, column: str) -> pd.Series:
    """Text labels stripped and lower-cased as published, with a logged count of those changed."""
    clean = values.map(lambda v: v.strip().lower() if isinstance(v, str) else v)
    changed = values.notna() & (clean != values)
    if changed.any():
        first = values[changed].iloc[0]
        log.warning(
            "%s: lower-cased and stripped %d %s values (e.g. %r as %r)",
            dataset, changed.sum(), column, first, clean[changed].iloc[0],
        )  # fmt: skip
    return clean


def _without_repeats(
    table: pd.DataFrame, *, dataset: str, file: str, key: Sequence[str], columns: Sequence[str]
) -> pd.DataFrame:
    """Drop exact repeats of a row (logged count); refuse ids whose rows disagree, by name.

    Rows are compared on ``key`` and the ``columns`` the adapter reads (those present).
    """
    used = [c for c in dict.fromkeys([*key, *columns]) if c in table]
    repeat = table.duplicated(subset=used)
    if repeat.any():
        log.warning("%s: dropped %d exact repeats of rows of %s", dataset, repeat.sum(), file)
        table = table[~repeat].reset_index(drop=True)
    clash = table.duplicated(subset=list(key), keep=False)
    if clash.any():
        rows = table[clash]
        differ = rows.groupby(list(key), dropna=False)[[c for c in used if c not in key]]
        differ = differ.nunique(dropna=False).gt(1).any()
        ids = rows[list(key)].map(str).agg("/".join, axis=1).unique()
        name = "/".join(key)
        raise DatasetError(
            f"{dataset}: {file} has conflicting rows ({', '.join(differ.index[differ])} "
            f"differ{'s' if differ.sum() == 1 else ''}) for {len(ids)} {name}: "
            f"{', '.join(ids[:5])}{', ...' if len(ids) > 5 else ''}; expected one row per {name}"
        )
    return table


def _labels_outside(
    values: pd.Series, outside: pd.Series, *, dataset: str, what: str, errors: str
) -> pd.Series:
    """Each row's problem where its label is ``outside`` the task: refused or skipped, by count.

    Args:
        values: the labels as read, to name in the message.
        outside: true where a label is none of the task's.
        dataset: the dataset's name, for the message.
        what: what such a label is, e.g. ``"three_partition_label outside benign, ..."``.
        errors: ``raise`` refuses them all; ``skip`` logs them, and they are dropped.
    """
    problem = pd.Series(None, index=values.index, dtype=object)
    if outside.any():
        message = (
            f"{dataset}: {outside.sum()} of {len(values)} rows have a {what}: "
            f"{_counts(values[outside])}"
        )
        if errors == "raise":
            raise DatasetError(message)
        log.warning("%s; skipped", message)
        problem[outside] = [f"{what} ({v!r})" for v in values[outside]]
    return problem


def _read_image(path: Path, size: int, channels: int) -> np.ndarray:
    """Decode one image file to (C, size, size) uint8 (MONAI's area resize)."""
    from monai.transforms import Resize
    from PIL import Image

    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB" if channels == 3 else "L"), dtype=np.float32)
    pixels = pixels.transpose(2, 0, 1) if pixels.ndim == 3 else pixels[None]
    resized = Resize((size, size), mode="area")(pixels)
    return np.clip(np.asarray(resized) + 0.5, 0, 255).astype(np.uint8)


def _load(
    meta: pd.DataFrame,
    *,
    dataset: str,
    classes: tuple[str, ...],
    image_size: int,
    channels: int,
    errors: str,
    reader=_read_image,
) -> Cohort:
    """Read the images of ``meta['path']``, drop (or refuse) bad rows, return the Cohort."""
    if meta.empty:
        raise DatasetError(f"{dataset}: no rows to load after the adapter's selection")
    reasons = meta.get("problem", pd.Series(None, index=meta.index)).copy()
    images = np.zeros((len(meta), channels, image_size, image_size), np.uint8)
    rows = tqdm(enumerate(meta["path"]), total=len(meta), desc=f"{dataset} images", leave=False)
    for i, path in rows:
        if isinstance(reasons.iloc[i], str):
            continue
        if not Path(path).is_file():
            reasons.iloc[i] = f"missing file {path}"
            continue
        try:
            images[i] = reader(Path(path), image_size, channels)
        except Exception as err:  # a corrupt file raises many kinds of error
            reasons.iloc[i] = f"unreadable image {path} ({err.__class__.__name__})"
    bad = reasons.map(lambda r: isinstance(r, str)).to_numpy(dtype=bool)
    if bad.any():
        first = "; ".join(reasons[bad].head(5))
        if bad.all():
            raise DatasetError(
                f"{dataset}: no usable rows: {bad.sum()} of {len(meta)} rows are unusable: {first}"
            )
        if errors == "raise":
            raise DatasetError(f"{dataset}: {bad.sum()} of {len(meta)} rows are unusable: {first}")
        log.warning("%s: skipped %d of %d rows (%s)", dataset, bad.sum(), len(meta), first)
    keep = ~bad
    meta = meta.loc[keep].drop(columns=["problem"], errors="ignore").reset_index(drop=True)
    meta["label"] = pd.Categorical(meta["diagnosis"], categories=classes).codes.astype(np.int64)
    return Cohort(images[keep], _unknown_as_group(meta, dataset), dataset, classes)


def _unknown_as_group(meta: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Missing protected attributes as the explicit group ``unknown``, with a logged count."""
    for column in [c for c in PROTECTED if c in meta]:
        missing = meta[column].isna()
        if missing.any():
            log.warning(
                "%s: %d of %d rows have no %s: kept as the group %r",
                dataset, missing.sum(), len(meta), column, UNKNOWN,
            )  # fmt: skip
            meta[column] = meta[column].where(~missing, UNKNOWN)
    return meta


def _ages(values: pd.Series, *, dataset: str, column: str) -> pd.Series:
    """Ages as numbers; a value that is not one is named, counted and kept as no age (NaN)."""
    age = pd.to_numeric(values, errors="coerce")
    text = values.notna() & age.isna()
    if text.any():
        log.warning(
            "%s: %d of %d %s values are not numbers (%s): kept as no age",
            dataset, text.sum(), len(values), column, _counts(values[text]),
        )  # fmt: skip
    return age


def _age_group(age: pd.Series, threshold: float) -> pd.Series:
    return pd.Series(np.where(age >= threshold, "old", "young"), index=age.index).where(age.notna())


# --------------------------------------------------------------------------- dermatology


def fitzpatrick17k(root, *, image_size: int = 64, errors: str = "skip") -> Cohort:
    """Fitzpatrick17k (Groh et al. 2021): ``fitzpatrick17k.csv`` and ``images/<md5hash>.jpg``.

    The task is the three-way partition (benign, malignant, non-neoplastic); the protected
    attribute is the Fitzpatrick type, with ``-1`` (unknown) rows dropped or refused. Labels
    that differ from the published ones only in case or surrounding spaces are normalised,
    with a logged count.
    """
    _check_options(image_size=image_size, errors=errors)
    root = Path(root)
    columns = ["md5hash", "fitzpatrick_scale", "label", "three_partition_label"]
    expected = f"fitzpatrick17k.csv (columns {', '.join(columns)}) and images/<md5hash>.jpg"
    csv = _find(root, "Fitzpatrick17k", ["fitzpatrick17k.csv"], expected)
    table = _read_table(csv, "Fitzpatrick17k", columns, text=["md5hash"])
    _image_folder(root / "images", "Fitzpatrick17k", expected)
    for column in ("label", "three_partition_label"):
        table[column] = _lowercase(table[column], dataset="Fitzpatrick17k", column=column)
    table = _without_repeats(
        table, dataset="Fitzpatrick17k", file=csv.name, key=["md5hash"], columns=columns
    )
    classes = ("benign", "malignant", "non-neoplastic")
    partition = table["three_partition_label"]
    scale = pd.to_numeric(table["fitzpatrick_scale"], errors="coerce")
    meta = pd.DataFrame(
        {
            "path": [str(root / "images" / f"{h}.jpg") for h in table["md5hash"]],
            "diagnosis": partition,
            "condition": table["label"],
            "skin_type": scale.map(ROMAN),
            "patient_id": table["md5hash"],
            "site": "fitzpatrick17k",
        }
    )
    meta["skin_group"] = np.where(scale <= 3, "light", "dark")
    unknown_type = (
        table["fitzpatrick_scale"]
        .map(lambda v: f"unknown skin type (fitzpatrick_scale = {v!r})")
        .where(~scale.isin(ROMAN))
    )
    outside = f"three_partition_label outside {', '.join(classes)}"
    meta["problem"] = _labels_outside(
        partition, ~partition.isin(classes), dataset="Fitzpatrick17k", what=outside, errors=errors
    ).combine_first(unknown_type)
    return _load(meta, dataset="Fitzpatrick17k", classes=classes, image_size=image_size, channels=3, errors=errors)  # fmt: skip


def isic2019(root, *, image_size: int = 64, errors: str = "skip", age_threshold=60) -> Cohort:
    """ISIC 2019: ground-truth and metadata CSVs and ``ISIC_2019_Training_Input/<image>.jpg``.

    A missing ``sex`` or ``age_approx`` puts the row in the group ``unknown`` (``age`` stays
    NaN); the lesion id stands in for the patient id in patient-level splits.
    """
    _check_options(image_size=image_size, errors=errors)
    _check_threshold(age_threshold)
    root = Path(root)
    gt_name, meta_name = "ISIC_2019_Training_GroundTruth.csv", "ISIC_2019_Training_Metadata.csv"
    expected = f"{gt_name}, {meta_name} and ISIC_2019_Training_Input/<image>.jpg"
    truth = _read_table(
        _find(root, "ISIC 2019", [gt_name], expected),
        "ISIC 2019",
        ["image", *ISIC_CLASSES],
        text=["image"],
    )
    info = _read_table(
        _find(root, "ISIC 2019", [meta_name], expected),
        "ISIC 2019",
        ["image", "age_approx", "sex"],
        text=["image"],
    )
    _image_folder(root / "ISIC_2019_Training_Input", "ISIC 2019", expected)
    truth = _without_repeats(
        truth, dataset="ISIC 2019", file=gt_name, key=["image"], columns=[*ISIC_CLASSES, "UNK"]
    )
    info = _without_repeats(
        info,
        dataset="ISIC 2019",
        file=meta_name,
        key=["image"],
        columns=["age_approx", "sex", "lesion_id", "anatom_site_general"],
    )
    table = truth.merge(info, on="image", how="left", validate="one_to_one")
    onehot = table[list(ISIC_CLASSES)].apply(pd.to_numeric, errors="coerce").to_numpy()
    age = _ages(table["age_approx"], dataset="ISIC 2019", column="age_approx")
    lesion = table["lesion_id"] if "lesion_id" in table else table["image"]
    meta = pd.DataFrame(
        {
            "path": [str(root / "ISIC_2019_Training_Input" / f"{i}.jpg") for i in table["image"]],
            "diagnosis": np.asarray(ISIC_CLASSES)[onehot.argmax(1)],
            "age": age,
            "age_group": _age_group(age, age_threshold),
            "sex": table["sex"].map({"female": "F", "male": "M"}),
            "patient_id": lesion.fillna(table["image"]),
            "site": table.get("anatom_site_general", pd.Series(index=table.index, dtype=object)),
        }
    )
    one_diagnosis = ((onehot == 0) | (onehot == 1)).all(1) & ((onehot == 1).sum(1) == 1)
    meta["problem"] = np.where(
        one_diagnosis, None, "not exactly one diagnosis (one 1, the rest 0) in the ground truth"
    )
    return _load(meta, dataset="ISIC 2019", classes=ISIC_CLASSES, image_size=image_size, channels=3, errors=errors)  # fmt: skip


# --------------------------------------------------------------------------- chest X-ray


def _binary_finding(
    values: pd.Series, *, finding: str, uncertain: str, dataset: str, errors: str
) -> tuple[pd.Series, pd.Series]:
    """CheXpert labels as the diagnosis and each row's problem (a dropped or unknown label).

    1 is positive, 0 negative, blank not mentioned (negative), -1 uncertain (``uncertain``:
    U-Zeros, U-Ones or dropped); any other value is refused or skipped as ``errors`` says.
    """
    numbers = pd.to_numeric(values, errors="coerce")
    outside = values.notna() & ~numbers.isin([1, 0, -1])
    what = f"{finding} value other than 1, 0, -1 or blank"
    problem = _labels_outside(values, outside, dataset=dataset, what=what, errors=errors)
    label = numbers.fillna(0).replace(-1.0, UNCERTAIN[uncertain])
    dropped = pd.Series(f"uncertain {finding} label dropped", index=values.index)
    diagnosis = pd.Series(np.where(label == 1, "positive", "negative"), index=values.index)
    return diagnosis, problem.combine_first(dropped.where(label.isna()))


def _chexpert_patient(path) -> str | None:
    """The ``patient<digits>`` folder named in one CSV path, if any."""
    match = CHEXPERT_PATIENT.search(path) if isinstance(path, str) else None
    return match.group(1) if match else None


def _chexpert_patients(paths: pd.Series, *, split: str) -> pd.Series:
    """The ``patient<digits>`` folder of each path; paths without one are refused by name."""
    found = paths.map(_chexpert_patient)
    missing = found.isna()
    if missing.any():
        first = ", ".join(map(str, paths[missing].head(3)))
        raise DatasetError(
            f"CheXpert: {missing.sum()} of {len(paths)} frontal rows have no patient<digits> "
            f"folder in Path, so no patient id for patient-level splits: {first}"
            f"{', ...' if missing.sum() > 3 else ''}; "
            f"expected {split}/patient<digits>/study<n>/view<n>_frontal.jpg"
        )
    return found


def chexpert(
    root,
    *,
    split: str = "train",
    finding: str = "Pleural Effusion",
    uncertain: str = "zeros",
    image_size: int = 64,
    errors: str = "skip",
    age_threshold=65,
) -> Cohort:
    """CheXpert (Irvin et al. 2019): ``train.csv``/``valid.csv`` with ``Path``, ``Sex``, ``Age``.

    One finding as a binary task; uncertain labels (-1) follow the paper's U-Zeros, U-Ones or
    are dropped. Frontal views only; the patient id comes from the path. A ``Sex`` of
    ``Unknown`` puts the row in the group ``unknown``.
    """
    _check_options(image_size=image_size, errors=errors)
    _check_threshold(age_threshold)
    _check_uncertain(uncertain)
    root = Path(root)
    if finding not in CHEXPERT_FINDINGS:
        raise ValueError(f"unknown CheXpert finding {finding!r}; choose from {CHEXPERT_FINDINGS}")
    columns = ["Path", "Sex", "Age", "Frontal/Lateral", finding]
    expected = (
        f"{split}.csv (columns {', '.join(columns)}) and the image folders it names "
        f"({split}/patient<id>/study<n>/view<n>_frontal.jpg)"
    )
    csv = _find(root, "CheXpert", [f"{split}.csv"], expected)
    table = _read_table(csv, "CheXpert", columns)
    _image_folder(root / split, "CheXpert", expected)
    table = _without_repeats(
        table, dataset="CheXpert", file=csv.name, key=["Path"], columns=[*columns, "AP/PA"]
    )
    table = table[table["Frontal/Lateral"] == "Frontal"].reset_index(drop=True)
    patients = _chexpert_patients(table["Path"], split=split)
    diagnosis, problem = _binary_finding(
        table[finding], finding=finding, uncertain=uncertain, dataset="CheXpert", errors=errors
    )
    age = _ages(table["Age"], dataset="CheXpert", column="Age")
    meta = pd.DataFrame(
        {
            "path": [str(_chexpert_path(root, p)) for p in table["Path"]],
            "diagnosis": diagnosis,
            "age": age,
            "age_group": _age_group(age, age_threshold),
            "sex": table["Sex"].map({"Female": "F", "Male": "M"}),
            "view": table.get("AP/PA", pd.Series(index=table.index, dtype=object)),
            "patient_id": patients,
            "site": "chexpert",
            "problem": problem,
        }
    )
    return _load(meta, dataset="CheXpert", classes=("negative", "positive"), image_size=image_size, channels=1, errors=errors)  # fmt: skip


def _chexpert_path(root: Path, relative: str) -> Path:
    """CSV paths start with the dataset folder's own name (``CheXpert-v1.0-small/train/...``)."""
    parts = Path(relative).parts
    return root.joinpath(*parts[1:]) if parts and parts[0] == root.name else root / relative


def _race(values: pd.Series) -> pd.Series:
    text = values.fillna("").str.upper()
    race = pd.Series(
        np.where(text.str.contains(r"\w"), "Other", None), index=values.index, dtype=object
    )
    race[text.str.contains(r"UNKNOWN|UNABLE|DECLINED")] = None
    for name in ("White", "Black", "Asian"):
        race[text.str.startswith(name.upper())] = name
    return race


def mimic_cxr(
    root,
    *,
    finding: str = "Pleural Effusion",
    uncertain: str = "zeros",
    image_size: int = 64,
    errors: str = "skip",
    age_threshold=65,
) -> Cohort:
    """MIMIC-CXR-JPG with MIMIC-IV's ``patients.csv`` (sex, age) and ``admissions.csv`` (race).

    Reads the metadata and CheXpert-label CSVs and ``files/pXX/pSUBJECT/sSTUDY/DICOM.jpg``.
    Frontal (PA/AP) images only; race is each subject's most frequent recorded race.
    """
    _check_options(image_size=image_size, errors=errors)
    _check_threshold(age_threshold)
    _check_uncertain(uncertain)
    root = Path(root)
    if finding not in CHEXPERT_FINDINGS:
        raise ValueError(f"unknown finding {finding!r}; choose from {CHEXPERT_FINDINGS}")
    expected = (
        "mimic-cxr-2.0.0-metadata.csv, mimic-cxr-2.0.0-chexpert.csv, patients.csv, "
        "admissions.csv (each may be .csv.gz) and files/pXX/p<subject>/s<study>/<dicom>.jpg"
    )

    def table(name, columns, key=()):
        """The table ``name``; with a ``key``, one row per key (see ``_without_repeats``)."""
        path = _find(
            root, "MIMIC-CXR", [name, f"{name}.gz", f"hosp/{name}", f"hosp/{name}.gz"], expected
        )
        found = _read_table(path, "MIMIC-CXR", columns)
        if not key:
            return found
        return _without_repeats(
            found, dataset="MIMIC-CXR", file=path.name, key=key, columns=columns
        )

    images = table(
        "mimic-cxr-2.0.0-metadata.csv",
        ["dicom_id", "subject_id", "study_id", "ViewPosition"],
        key=["dicom_id"],
    )
    labels = table(
        "mimic-cxr-2.0.0-chexpert.csv",
        ["subject_id", "study_id", finding],
        key=["subject_id", "study_id"],
    )
    patients = table("patients.csv", ["subject_id", "gender", "anchor_age"], key=["subject_id"])
    admissions = table("admissions.csv", ["subject_id", "race"])
    _image_folder(root / "files", "MIMIC-CXR", expected)
    race = admissions.assign(race=_race(admissions["race"])).dropna(subset=["race"])
    race = race.groupby("subject_id")["race"].agg(lambda r: r.value_counts().index[0])
    frame = (
        images[images["ViewPosition"].isin(["PA", "AP"])]
        .merge(labels, on=["subject_id", "study_id"], how="left")
        .merge(patients, on="subject_id", how="left")
        .merge(race.rename("race"), on="subject_id", how="left")
        .reset_index(drop=True)
    )
    diagnosis, problem = _binary_finding(
        frame[finding], finding=finding, uncertain=uncertain, dataset="MIMIC-CXR", errors=errors
    )
    age = _ages(frame["anchor_age"], dataset="MIMIC-CXR", column="anchor_age")
    meta = pd.DataFrame(
        {
            "path": [
                str(root / "files" / f"p{str(s)[:2]}" / f"p{s}" / f"s{st}" / f"{d}.jpg")
                for s, st, d in zip(
                    frame["subject_id"], frame["study_id"], frame["dicom_id"], strict=True
                )
            ],
            "diagnosis": diagnosis,
            "age": age,
            "age_group": _age_group(age, age_threshold),
            "sex": frame["gender"].map({"F": "F", "M": "M"}),
            "race": frame["race"],
            "view": frame["ViewPosition"],
            "patient_id": frame["subject_id"].astype(str),
            "site": "mimic",
            "problem": problem,
        }
    )
    return _load(meta, dataset="MIMIC-CXR", classes=("negative", "positive"), image_size=image_size, channels=1, errors=errors)  # fmt: skip


# --------------------------------------------------------------------------- brain MRI


def _read_mid_axial_slice(path: Path, size: int, channels: int) -> np.ndarray:
    """The middle axial slice of a NIfTI volume in RAS orientation, 1-99th percentile scaled."""
    import nibabel as nib
    from monai.transforms import Resize

    volume = nib.as_closest_canonical(nib.load(str(path))).get_fdata(dtype=np.float32)
    axial = np.rot90(volume[:, :, volume.shape[2] // 2])
    lo, hi = np.percentile(axial, [1, 99])
    scaled = np.clip((axial - lo) / max(hi - lo, 1e-6), 0, 1) * 255
    resized = np.asarray(Resize((size, size), mode="area")(scaled[None].copy()))
    return np.clip(resized + 0.5, 0, 255).astype(np.uint8)


def ixi(root, *, image_size: int = 64, errors: str = "skip", age_threshold=65) -> Cohort:
    """IXI: the ``IXI.xls`` demographics sheet and T1 volumes ``IXI<ID>-<site>-<n>-T1.nii.gz``.

    IXI holds healthy volunteers only, so the cohort has one class; chapters use it for age,
    sex and site. The site sets the field strength (HH 3T; Guys and IOP 1.5T).
    """
    _check_options(image_size=image_size, errors=errors)
    _check_threshold(age_threshold)
    root = Path(root)
    columns = ["IXI_ID", "SEX_ID (1=m, 2=f)", "AGE"]
    sheet = _find(
        root,
        "IXI",
        ["IXI.xls", "IXI.xlsx"],
        f"IXI.xls (columns {', '.join(columns)}) and IXI-T1/IXI<ID>-<site>-<n>-T1.nii.gz",
    )
    demographics = _without_repeats(
        _read_table(sheet, "IXI", columns),
        dataset="IXI",
        file=sheet.name,
        key=["IXI_ID"],
        columns=columns,
    ).set_index("IXI_ID")
    pattern = re.compile(r"IXI(\d{3})-(Guys|HH|IOP)-\d+-T1\.nii(\.gz)?$")
    volumes = sorted(p for p in root.rglob("*-T1.nii*") if pattern.search(p.name))
    if not volumes:
        raise FileNotFoundError(f"IXI: no T1 volumes (IXI<ID>-<site>-<n>-T1.nii.gz) under {root}")
    ids = [int(pattern.search(p.name).group(1)) for p in volumes]
    sites = [pattern.search(p.name).group(2) for p in volumes]
    known = [i in demographics.index for i in ids]
    rows = demographics.reindex(ids)
    age = _ages(rows["AGE"], dataset="IXI", column="AGE").reset_index(drop=True)
    meta = pd.DataFrame(
        {
            "path": [str(p) for p in volumes],
            "diagnosis": "healthy",
            "age": age,
            "age_group": _age_group(age, age_threshold),
            "sex": rows["SEX_ID (1=m, 2=f)"].map({1: "M", 2: "F"}).reset_index(drop=True),
            "site": sites,
            "field_strength": [IXI_FIELD[s] for s in sites],
            "patient_id": [f"IXI{i:03d}" for i in ids],
            "problem": [None if k else "no row in the demographics sheet" for k in known],
        }
    )
    return _load(meta, dataset="IXI", classes=("healthy",), image_size=image_size, channels=1, errors=errors, reader=_read_mid_axial_slice)  # fmt: skip


ADAPTERS = {
    "fitzpatrick17k": fitzpatrick17k,
    "isic2019": isic2019,
    "chexpert": chexpert,
    "mimic_cxr": mimic_cxr,
    "ixi": ixi,
}


def load(name: str, root, **kwargs) -> Cohort:
    """Load a real dataset by name (fitzpatrick17k, isic2019, chexpert, mimic_cxr, ixi)."""
    if name not in ADAPTERS:
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(ADAPTERS)}")
    return ADAPTERS[name](root, **kwargs)
