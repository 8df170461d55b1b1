"""What a run is configured by: the mode's sizes and the device rule.

Science modules read their sizes from here, never from the runner (``fairkit.runs``), so a
script can use the package without papermill.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

MODES = ("smoke", "quick", "study", "full")
DEVICES = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


@dataclass(frozen=True)
class Settings:
    """Sizes that a mode decides, in one place for every chapter."""

    n_train: int
    n_test: int
    image_size: int
    epochs: int
    batch_size: int
    width: int
    n_boot: int
    backbone: str
    backbone_width: int  # first-stage channels of ResNet-18 / VGG-11 (64: torchvision's)
    backbones: tuple[str, ...]  # architectures a chapter compares (SPARE: ResNet-18, VGG-11)
    diffusion_steps: int  # optimiser steps of the conditional diffusion model
    diffusion_batch: int  # images per diffusion step
    diffusion_width: int  # channels of its first UNet level
    n_counterfactual: int  # test images given learned counterfactuals (each costs 12 passes)
    fairgen_size: int  # FairGen's image side: three diffusion models train per chapter run
    fairgen_train: int  # FairGen's real training images (each synthesis adds up to ~45% more)
    fairgen_test: int  # FairGen's test images, and as many of the external site
    fairgen_diffusion_steps: int  # optimiser steps of each of FairGen's diffusion models
    fairgen_diffusion_batch: int  # images per step (quick: more, smaller steps learn faster)
    fairgen_pairs: int  # FairGen's preference pairs per (group, finding) cell
    fairgen_dpo_steps: tuple[int, ...]  # the search's step counts of Diffusion-DPO: one run to
    # the largest, read at each (``align_tuned``)
    fairgen_betas: tuple[float, ...]  # the search's preference strengths beta (``align_tuned``)
    fairgen_lrs: tuple[float, ...]  # and its learning rates: every (beta, lr, steps) is a candidate
    fairgen_rater_steps: int  # fewest optimiser steps of each of the rater's classifiers
    ssl_pool: int  # unlabelled images a self-supervised encoder pretrains on
    ssl_steps: int  # its SimCLR optimiser steps
    ssl_batch: int  # images per step (each seen in two views)
    monitor_batches: int  # batches of a deployment stream (its time steps)
    monitor_batch: int  # images per batch


SETTINGS = {
    "smoke": Settings(
        n_train=192,
        n_test=128,
        image_size=16,
        epochs=1,
        batch_size=64,
        width=8,
        n_boot=20,
        backbone="small_cnn",
        backbone_width=4,
        backbones=("small_cnn",),
        diffusion_steps=30,
        diffusion_batch=64,
        diffusion_width=8,
        n_counterfactual=24,
        fairgen_size=16,
        fairgen_train=192,
        fairgen_test=128,
        fairgen_diffusion_steps=30,
        fairgen_diffusion_batch=64,
        fairgen_pairs=8,
        fairgen_dpo_steps=(2, 4),
        fairgen_betas=(2000.0,),
        fairgen_lrs=(1e-4,),
        fairgen_rater_steps=10,
        ssl_pool=128,
        ssl_steps=3,
        ssl_batch=32,
        monitor_batches=8,
        monitor_batch=32,
    ),
    "quick": Settings(
        n_train=2000,
        n_test=1500,
        image_size=32,
        epochs=5,
        batch_size=32,  # twice the steps of 64 at the same cost: minority groups get learned
        width=16,
        n_boot=200,
        backbone="small_cnn",
        backbone_width=8,
        backbones=("small_cnn",),
        diffusion_steps=400,
        diffusion_batch=64,
        diffusion_width=16,
        n_counterfactual=100,
        fairgen_size=16,
        fairgen_train=1000,  # fewer than the other chapters' (2,000, 1,500): the chapter fits
        fairgen_test=1000,  # its 6 minutes on a CPU
        fairgen_diffusion_steps=600,  # with 1,000 images: the chapter in 6 min (800, 2,000: 7.7)
        fairgen_diffusion_batch=32,
        fairgen_pairs=24,
        fairgen_dpo_steps=(50,),
        fairgen_betas=(2000.0,),  # one candidate: quick mode shows the study sweep's search
        fairgen_lrs=(3e-4,),
        fairgen_rater_steps=300,  # 5 epochs of 1,000 images are 160: MRI's collapse to one class
        ssl_pool=4000,
        ssl_steps=300,
        ssl_batch=64,
        monitor_batches=24,
        monitor_batch=250,
    ),
    "full": Settings(
        n_train=40000,
        n_test=10000,
        image_size=64,
        epochs=30,
        batch_size=256,
        width=64,
        n_boot=1000,
        backbone="resnet18",
        backbone_width=64,
        backbones=("resnet18", "vgg11"),
        diffusion_steps=30000,
        diffusion_batch=256,
        diffusion_width=64,
        n_counterfactual=500,
        fairgen_size=64,
        fairgen_train=40000,
        fairgen_test=10000,
        fairgen_diffusion_steps=30000,
        fairgen_diffusion_batch=256,
        fairgen_pairs=500,
        fairgen_dpo_steps=(500, 1000, 2000),
        fairgen_betas=(500.0, 2000.0, 8000.0),
        fairgen_lrs=(3e-5, 1e-4),
        fairgen_rater_steps=300,
        ssl_pool=100000,
        ssl_steps=20000,
        ssl_batch=512,
        monitor_batches=48,
        monitor_batch=1000,
    ),
}


# The size the kept sweeps of FairGen's chapters use on a 2-core CPU: quick mode's, with FairGen
# at 32 px. Chosen by the controls alone (chapter 1, ``fairkit.studies.testbed``): at 16 px the
# chest X-ray judge of the finding reached 0.827 balanced accuracy, below the 0.85 an instrument
# needs (0.851 at 32 px); 250 pairs a cell keep 200 test pairs a group (``fairgen.PAIR_SPLITS``)
# to measure alignment; the generator trains until the judges see the intended group in its
# images (0.92-0.97 of skin's at 1,500 steps: the manipulation check, chapter 5). The alignment
# search (DPO and its reference-free form alike, ``fairgen.align_tuned``) was set by its own
# objective, held-out preference accuracy on validation pairs, and by the realism of its samples
# (``fairgen.realism_probe``, worst cell, bound 0.25; skin, seed 0; gains ± 1.96 se): at lr 1e-3,
# DPO at beta 2000 gained +0.037 ± 0.020 after 300 steps but its samples failed the probe from
# step 50 on (worst cell 0.00-0.01: noise). At lr 3e-4, read at 100 / 200 / 300 steps, the worst
# cell's realism fell as the model moved (beta 500: 0.37 / 0.13 / 0.00; 2000: 0.48 / 0.26 / 0.19;
# 8000: 0.50 / 0.47 / 0.21) and no realistic candidate's gain left the noise (at most
# +0.002 ± 0.010); 60 steps at lr 1e-4 moved nothing (+0.001). The reference-free form's samples
# failed the probe at step 50 at every rate tried (3e-5: worst cell 0.05; 1e-4, 3e-4, 1e-3:
# 0.00). No fairness endpoint and no judge was read.
SETTINGS["study"] = replace(
    SETTINGS["quick"],
    fairgen_size=32,
    fairgen_diffusion_steps=1500,
    fairgen_pairs=250,
    fairgen_dpo_steps=(100, 200, 300),
    fairgen_betas=(500.0, 2000.0, 8000.0),
    fairgen_lrs=(3e-4,),
)
# The chapters that read FairGen's sizes: their kept sweeps run at ``study``, which a quick run
# of them reads. The others' quick sizes are the study setting's (the two differ only in
# FairGen's fields), so their kept sweeps are quick mode's.
STUDY_CHAPTERS = ("01_data", "05_fairgen")


# The judges (chapters 4 and 5's instruments) learn from a fresh draw of the causal model this many
# times the chapter's training set: on one training set's worth, the skin disease judge found
# "malignant" in 0.60 of exact benign -> melanoma counterfactuals and MRI's finding judge
# predicted one class; on four, 0.91 (the instrument controls, ``fairkit.studies.testbed``).
JUDGE_DRAW = 4
# FairGen's manipulation checks (``studies.fairgen.manipulation_checks``, the claims' gates): in
# each cell, the judges see the intended group in at least 0.85 of the generated images, the
# intended finding at most 0.10 below their agreement on real images of the cell, and the images'
# realism (``Rater.realism``, mean of the cell) at least a quarter of real test images'. The
# realism bound lies between its two controls (judges at the study setting, seed 0): held-out
# real images score 1 by construction, uniform noise 0.002 in every modality.
MANIPULATION = {"group": 0.85, "finding": 0.10, "realism": 0.25}
FAIRGEN_PAPER = {"skin": 95.9, "cxr": 80.0, "mri": 35.2}  # FairGen's improvement of the gap, %


def settings(mode: str) -> Settings:
    """Return the sizes of ``mode`` (one of ``MODES``)."""
    if mode not in SETTINGS:
        raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    return SETTINGS[mode]


def swept_mode(chapter: str, mode: str) -> str:
    """The mode of the kept sweep that a run of ``chapter`` in ``mode`` reads its verdicts from."""
    return "study" if mode == "quick" and chapter in STUDY_CHAPTERS else mode


def resolve_device(device: str) -> str:
    """Map ``auto`` to the best available device; refuse a device that is not there."""
    import torch

    if not DEVICES.match(str(device)):
        raise ValueError(f"device must be auto, cpu, mps, cuda or cuda:N; got {device!r}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but no CUDA device is visible")
    return device
