import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test` runs two workers: one thread each, so
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # they, and the chapter kernels they
        os.environ.setdefault(_name, "1")  # start, do not fight over the two cores

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def write_notebook(tmp_path):
    """Write a small jupytext chapter with the standard parameters and a given body."""

    def write(body: str, name: str = "99_toy", extra_params: str = "") -> Path:
        text = (
            "# %% [markdown]\n# # Toy\n\n"
            '# %% tags=["parameters"]\n'
            f'mode = "smoke"\nseed = 0\ndevice = "cpu"\n{extra_params}\n'
            "# %%\nfrom fairkit import runs\n"
            "run = runs.start()\n"
            f"# %%\n{body}\n"
        )
        path = tmp_path / f"{name}.py"
        path.write_text(text)
        return path

    return write


@pytest.fixture(scope="session")
def skin16():
    """256 generated skin images at 16 px, for the tiny diffusion model's tests."""
    from fairkit.data import synth

    return synth.generate("skin", 256, seed=0, image_size=16)


@pytest.fixture(scope="session")
def skin_findings():
    """Generated binary skin cohorts at 16 px with FairGen's ``finding`` column, by (n, seed)."""
    from fairkit.data import synth
    from fairkit.studies.fairgen import with_finding

    def make(n: int, seed: int):
        cohort = synth.generate("skin", n, seed=seed, image_size=16)
        return with_finding(cohort.binarize(["melanoma", "bcc"], names=("benign", "malignant")))

    return make


@pytest.fixture(scope="session")
def tiny_unet():
    """Build a tiny conditional UNet (16 px, widths 8 and 16) conditioned on skin group and sex."""
    import torch

    from fairkit.models.diffusion import ConditionalUNet

    def build(**config):
        torch.manual_seed(0)  # the same initial weights at every call
        vocabulary = {"skin_group": ("dark", "light"), "sex": ("F", "M")}
        return ConditionalUNet(
            vocabulary=vocabulary, image_size=16, channels=3, block_out_channels=(8, 16), **config
        )

    return build


@pytest.fixture(scope="session")
def trained_unet(skin16, tiny_unet):
    """The tiny UNet trained 100 steps on ``skin16``, and its loss history."""
    from fairkit.training import DiffusionConfig, train_diffusion

    config = DiffusionConfig(steps=100, batch_size=16, progress=False)
    return train_diffusion(tiny_unet(), skin16, config=config)


def predictions(n, seed, groups=("F", "M"), skill=0.3):
    """A binary prediction table of ``n`` patients (two images each) for the metric tests."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = np.clip(skill * y + (1 - skill) * rng.random(n), 0, 1)
    return pd.DataFrame(
        {
            "y_true": y,
            "y_pred": (s >= 0.5).astype(int),
            "score_neg": 1 - s,
            "score_pos": s,
            "sex": rng.choice(groups, n),
            "site": rng.choice(["A", "B", "C"], n),
            "patient_id": np.arange(n) // 2,
        }
    )
