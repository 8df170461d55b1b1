"""Generated cohorts with traceable bias: ``generate``, exact ``counterfactual``, splits, shards.

Every row of a generated cohort keeps its causal variables and exogenous noise, so every later
chapter can be checked against ground truth, and ``counterfactual`` answers do(...) exactly.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from fairkit import seeds
from fairkit.data import bias as B
from fairkit.data import cxr, mri, skin
from fairkit.data.cohort import Cohort
from fairkit.data.render import render_in_batches
from fairkit.data.scm import SCM
from fairkit.io import write_atomic, write_json

MODALITIES = {"skin": skin.scm, "cxr": cxr.scm, "mri": mri.scm}


@dataclass(frozen=True)
class BinaryTask:
    """The study's binary task on a modality and the protected attribute it is audited on."""

    positive: tuple[str, ...]
    names: tuple[str, str]
    attribute: str
    minority: str
    artifact: str
    artifact_value: object
    artifact_absent: object


BINARY_TASKS = {
    "skin": BinaryTask(("melanoma", "bcc"), ("benign", "malignant"), "skin_group", "dark", "ruler", 1, 0),
    "cxr": BinaryTask(("cardiomegaly", "effusion", "opacity"), ("normal", "abnormal"), "sex", "F", "support_device", 1, 0),
    "mri": BinaryTask(("dementia",), ("healthy", "dementia"), "age_group", "old", "field_strength", "3T", "1.5T"),
}  # fmt: skip
IMAGE_SIZES = (16, 32, 64, 128)
SUBTLETY = "scm_subtlety"


def model(modality: str, subtlety: float | None = None) -> SCM:
    """The structural causal model of ``modality`` (skin, cxr, mri).

    ``subtlety`` in [0, 1) sets how alike the diagnoses look (None: the calibrated default).
    """
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; choose from {', '.join(MODALITIES)}")
    if subtlety is None:
        return MODALITIES[modality]()
    _check_subtlety(subtlety)
    return MODALITIES[modality](subtlety)


def _check_subtlety(subtlety) -> None:
    """Refuse a subtlety outside [0, 1): at 1 the diagnoses look alike, beyond 1 their signs flip."""
    if (
        isinstance(subtlety, bool)
        or not isinstance(subtlety, int | float | np.integer | np.floating)
        or not 0 <= subtlety < 1
    ):
        raise ValueError(f"subtlety must be a number in [0, 1); got {subtlety!r}")


def _check_count(value, *, name: str) -> None:
    """Refuse a number of images that is not a whole number of at least one."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a whole number >= 1; got {value!r}")


def sample_table(
    modality: str,
    n: int,
    seed: int,
    *,
    do: dict | None = None,
    subtlety: float | None = None,
    under=None,
    spurious=None,
    label_noise=None,
) -> pd.DataFrame:
    """Draw the metadata of a cohort (no pixels): noise, causal variables, labels, biases."""
    _check_count(n, name="n")
    scm = model(modality, subtlety)
    under, spurious = B.as_bias(B.UnderRepresent, under), B.as_bias(B.Spurious, spurious)
    label_noise = B.as_bias(B.LabelNoise, label_noise)
    rng = seeds.rng(seed, "selection")
    pool_size = n if under is None and spurious is None else 3 * n + 200
    for _ in range(8):
        table = scm.solve(scm.sample_noise(pool_size, seed), do=do)
        index = (
            B.select(table, n, rng, under=under, spurious=spurious)
            if pool_size > n
            else np.arange(n)
        )
        if index is not None:
            break
        pool_size *= 2
    else:
        raise ValueError(f"could not reach the requested biases with a pool of {pool_size} samples")
    table = table.iloc[index].reset_index(names="pool_index")
    table["label"] = pd.Categorical(table["diagnosis"], categories=scm.classes).codes.astype(
        np.int64
    )
    table["patient_id"] = [f"{modality}-{seed}-{i}" for i in table["pool_index"]]
    table["seed"] = seed
    table[SUBTLETY] = scm.cfg["subtlety"]
    if label_noise is not None:
        table = B.add_label_noise(table, label_noise, len(scm.classes), rng)
    return table


def _check_size(image_size: int) -> None:
    """Refuse an image side other than the renderers' sizes (a float 16.0 included)."""
    if not isinstance(image_size, int | np.integer) or image_size not in IMAGE_SIZES:
        raise ValueError(f"image_size must be one of {IMAGE_SIZES}; got {image_size}")


def generate(
    modality: str, n: int, seed: int = 0, image_size: int = 64, *, do=None, subtlety=None, **bias
) -> Cohort:
    """Generate a cohort of ``n`` images from the causal model of ``modality``.

    Args:
        modality: ``skin``, ``cxr`` or ``mri``.
        n: number of images.
        seed: seed of the exogenous noise and of the bias sampler.
        image_size: side in pixels (16, 32, 64 or 128).
        do: interventions applied to the whole cohort, e.g. ``{"site": "X"}`` for the external site.
        subtlety: difficulty in [0, 1): how alike the diagnoses look (None: the calibrated default).
        **bias: ``under``, ``spurious``, ``label_noise`` (see ``fairkit.data.bias``).
    """
    _check_size(image_size)
    unknown = set(bias) - {"under", "spurious", "label_noise"}
    if unknown:
        raise TypeError(f"unknown bias {sorted(unknown)}; use under, spurious or label_noise")
    table = sample_table(modality, n, seed, do=do, subtlety=subtlety, **bias)
    scm = model(modality, table[SUBTLETY].iloc[0])
    return Cohort(render_in_batches(scm.render, table, image_size), table, modality, scm.classes)


def counterfactual(cohort: Cohort, do: dict) -> Cohort:
    """The exact counterfactual cohort: same noise, ``do`` applied, descendants re-rendered.

    ``do={}`` reproduces the input images bit for bit.
    """
    if SUBTLETY not in cohort.meta:
        raise ValueError(
            "exact counterfactuals need a generated cohort (its causal variables and noise)"
        )
    scm = model(cohort.modality, float(cohort.meta[SUBTLETY].iloc[0]))
    table = scm.counterfactual_table(cohort.meta, do)
    changed = table["diagnosis"].to_numpy() != cohort.meta["diagnosis"].to_numpy()
    codes = pd.Categorical(table["diagnosis"], categories=scm.classes).codes
    table["label"] = np.where(changed, codes, table["label"]).astype(np.int64)
    images = render_in_batches(scm.render, table, cohort.images.shape[-1])
    return Cohort(images, table, cohort.modality, cohort.classes)


def make_splits(
    modality: str,
    *,
    seed: int,
    image_size: int,
    n_train: int,
    n_val: int,
    n_test: int,
    subtlety=None,
    **bias,
) -> dict[str, Cohort]:
    """Biased train/val cohorts, a balanced unbiased test cohort and a shifted external-site one.

    The test cohorts keep the natural prevalence and have no label noise; the artifact of a
    spurious correlation is made exactly independent of the diagnosis (strength 0), and the
    groups of an under-represented attribute are balanced.
    """
    for name, count in {"n_train": n_train, "n_val": n_val, "n_test": n_test}.items():
        _check_count(count, name=name)
    under = B.as_bias(B.UnderRepresent, bias.get("under"))
    spurious = B.as_bias(B.Spurious, bias.get("spurious"))
    unbiased = {}
    if under is not None:
        groups = model(modality).mechanism(under.attribute).values or (under.group,)
        unbiased["under"] = B.UnderRepresent(under.attribute, under.group, 1 / len(groups))
    if spurious is not None:
        unbiased["spurious"] = B.Spurious(
            spurious.artifact, spurious.diagnosis, 0.0, spurious.value
        )
    common = {"image_size": image_size, "subtlety": subtlety}
    splits = {
        "train": generate(modality, n_train, seed=seeds.stream(seed, "train"), **common, **bias),
        "val": generate(modality, n_val, seed=seeds.stream(seed, "val"), **common, **bias),
        "test": generate(modality, n_test, seed=seeds.stream(seed, "test"), **common, **unbiased),
        "external": generate(
            modality,
            n_test,
            seed=seeds.stream(seed, "external"),
            **common,
            **unbiased,
            do={"site": "X"},
        ),
    }
    for name, cohort in splits.items():
        cohort.meta["split"] = name
    return splits


def write_shards(
    path: str | os.PathLike,
    modality: str,
    n: int,
    *,
    seed: int = 0,
    image_size: int = 64,
    shard_size: int = 16384,
    **kwargs,
) -> Path:
    """Write a cohort larger than memory: a memory-mapped ``images.npy`` filled shard by shard.

    The folder is built under ``<path>.partial`` and renamed when complete; an interrupted run
    resumes from its last finished shard. Read it back lazily with ``Cohort.load(path)``.
    """
    _check_size(image_size)
    _check_count(n, name="n")
    _check_count(shard_size, name="shard_size")
    path = Path(path)
    if (path / "cohort.json").exists():
        return path
    partial = path.with_name(path.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    config = {"modality": modality, "n": n, "seed": seed, "image_size": image_size, **kwargs}
    progress_file = partial / "progress.json"
    progress = json.loads(progress_file.read_text()) if progress_file.exists() else {}
    if progress.get("config") != json.loads(json.dumps(config, default=str)):
        shutil.rmtree(partial)
        partial.mkdir(parents=True)
        progress = {"config": config, "done": 0}
    table_file = partial / "meta.parquet"
    if not table_file.exists():
        table = sample_table(modality, n, seed, **kwargs)
        write_atomic(table_file, lambda tmp: table.to_parquet(tmp, index=False))
    table = pd.read_parquet(table_file)
    scm = model(modality, float(table[SUBTLETY].iloc[0]))
    shape = (n, scm.channels, image_size, image_size)
    images_file = partial / "images.npy"
    mode = "r+" if images_file.exists() else "w+"
    images = np.lib.format.open_memmap(images_file, mode=mode, dtype=np.uint8, shape=shape)
    for start in tqdm(
        range(progress["done"], n, shard_size), desc=f"{modality} shards", unit="shard"
    ):
        stop = min(start + shard_size, n)
        images[start:stop] = render_in_batches(scm.render, table.iloc[start:stop], image_size)
        images.flush()
        progress["done"] = stop
        write_json(progress_file, progress)
    del images
    write_json(partial / "cohort.json", {"modality": modality, "classes": list(scm.classes)})
    progress_file.unlink()
    os.replace(partial, path)
    return path
