"""The training loop for image classifiers on a Cohort."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from fairkit.data import Cohort


def as_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, C, H, W) images as float32 in [0, 1]."""
    return torch.from_numpy(np.asarray(images)).float().div_(255)


def fit(
    model: nn.Module,
    cohort: Cohort,
    *,
    epochs: int,
    batch_size: int = 128,
    lr: float = 3e-3,
    seed: int = 0,
    device: str = "cpu",
) -> nn.Module:
    """Train ``model`` on ``cohort`` with cross-entropy and AdamW; deterministic for a seed on CPU."""
    generator = torch.Generator().manual_seed(seed)
    x, y = as_tensor(cohort.images), torch.as_tensor(cohort.labels)
    model.to(device).train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * -(-len(x) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=steps)
    with tqdm(total=steps, desc="training", unit="step", leave=False) as bar:
        for _ in range(epochs):
            for idx in torch.randperm(len(x), generator=generator).split(batch_size):
                loss = nn.functional.cross_entropy(model(x[idx].to(device)), y[idx].to(device))
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                schedule.step()
                bar.update()
                bar.set_postfix(loss=f"{loss.item():.3f}")
    return model.eval()


@torch.no_grad()
def predict(
    model: nn.Module, cohort: Cohort, *, batch_size: int = 512, device="cpu"
) -> pd.DataFrame:
    """The predictions table: ``y_true``, ``y_pred``, one ``score_<class>`` column per class, groups."""
    model.to(device).eval()
    x = as_tensor(cohort.images)
    probs = torch.cat([model(b.to(device)).softmax(1).cpu() for b in x.split(batch_size)]).numpy()
    table = cohort.meta.drop(columns=[c for c in cohort.meta if c.startswith(("u_", "tex_"))])
    table = table.assign(y_true=cohort.labels, y_pred=probs.argmax(1))
    for k, name in enumerate(cohort.classes):
        table[f"score_{name}"] = probs[:, k]
    return table
