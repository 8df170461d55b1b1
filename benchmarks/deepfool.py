"""Batched DeepFool (fairkit) against a per-sample loop with one backward per class.

The loop is the way common attack libraries run DeepFool: one input at a time, every class's
logit differentiated by its own backward pass. Both run on the same trained model and inputs,
with the same overshoot and step rule, so their distances must agree. Then: the cost of SPARE's
distances for a whole training set (task and group model) in training-epoch equivalents.
Usage: python benchmarks/deepfool.py [--n 512] [--device auto] [--mode quick] [--backbone NAME]
[--epochs E] (fewer training epochs than the mode's, for a full-size model in minutes)
"""

import argparse
import contextlib
import time
from dataclasses import replace

import numpy as np
import torch
from torch.fx.experimental.optimization import fuse

from fairkit.config import resolve_device, settings
from fairkit.experiment import Experiment
from fairkit.methods import deepfool, spare
from fairkit.training import as_tensor, fit, fit_attribute


def per_sample_deepfool(model, x, *, overshoot=0.02, max_iter=50):
    """Reference: one input at a time, a backward per class, as attack libraries do."""
    distances, steps = [], []
    for xi in x:
        x0 = xi[None]
        with torch.no_grad():
            original = model(x0).argmax(1).item()
        r, taken = torch.zeros_like(x0), 0
        for _ in range(max_iter):
            xa = (x0 + (1 + overshoot) * r).requires_grad_(True)
            logits = model(xa)[0]
            if logits.argmax().item() != original:
                break
            grads = [
                torch.autograd.grad(logits[k], xa, retain_graph=True)[0] for k in range(len(logits))
            ]
            best = None
            for k in range(len(logits)):
                if k == original:
                    continue
                w = grads[k] - grads[original]
                f = (logits[k] - logits[original]).detach()
                dist = f.abs() / w.norm()
                if best is None or dist < best[0]:
                    best = (dist, f, w)
            _, f, w = best
            r, taken = r + f.abs() / w.norm() ** 2 * w, taken + 1
        distances.append(r.norm().item())
        steps.append(taken)
    return np.array(distances), np.array(steps)


@contextlib.contextmanager
def strict_float32():
    """Full float32 products on a GPU, so that both implementations round alike."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def timed(fn, device):
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - start


def sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--mode", default="quick")
    parser.add_argument("--backbone", default=None, help="default: the mode's backbone")
    parser.add_argument("--epochs", type=int, default=None, help="default: the mode's epochs")
    args = parser.parse_args()
    device = resolve_device(args.device)
    s = settings(args.mode)
    s = replace(s, backbone=args.backbone or s.backbone, epochs=args.epochs or s.epochs)
    torch.set_num_threads(torch.get_num_threads())
    experiment = Experiment("skin", s, 0, device)
    splits = experiment.splits(**experiment.bias("under", 0.2))
    train, val = splits["train"], splits["val"]
    config = experiment.config()
    task = fit(experiment.make_model(), train, config=config, val=val).model.to(device).eval()
    print(
        f"model: {s.backbone} width {s.width if s.backbone == 'small_cnn' else s.backbone_width}, "
        f"{s.image_size} px, trained {s.epochs} epochs on {len(train)} "
        f"skin images (batch {s.batch_size}); device {device}; {torch.get_num_threads()} threads"
    )

    x = as_tensor(train.images[: args.n]).to(device)
    task = fuse(task.requires_grad_(False))  # the same folded model as fairkit's DeepFool uses
    with strict_float32():
        deepfool.deepfool(task, x, device=device)  # warm-up: kernels, cuDNN plans of every shape
        per_sample_deepfool(task, x[:8])
        batched, t_batched = timed(lambda: deepfool.deepfool(task, x, device=device), device)
        (reference, steps), t_loop = timed(lambda: per_sample_deepfool(task, x), device)
    print(f"{args.n} inputs, strict float32 (a GPU's TF32 rounding alone moves distances by ~5%)")
    rel = np.abs(batched.distance - reference) / np.maximum(reference, 1e-12)
    print(f"  mean {batched.iterations.mean():.2f} DeepFool steps per input")
    print(f"  per-sample loop, backward per class : {args.n / t_loop:10.1f} samples/s")
    print(f"  batched (fairkit)                   : {args.n / t_batched:10.1f} samples/s")
    print(f"  speed-up                            : {t_loop / t_batched:10.1f}x")
    print(
        f"  float32 distances: {(rel < 1e-3).mean():.1%} agree within 1e-3 (max relative "
        f"difference {rel.max():.1e}, steps equal for {(steps == batched.iterations).mean():.1%})"
    )
    double, few = task.double(), x[:64].double()
    exact = np.abs(deepfool.deepfool_distance(double, few) - per_sample_deepfool(double, few)[0])
    print(
        f"  float64, first 64 inputs: max relative difference "
        f"{(exact / per_sample_deepfool(double, few)[0]).max():.1e} (float32 gaps are rounding)"
    )
    task.float()

    groups_model, groups = fit_attribute(
        experiment.make_model, train, val, attribute="skin_group", config=config
    )
    _, t_weights = timed(
        lambda: spare.boundary_distances(task, groups_model, train, groups=groups, device=device),
        device,
    )
    one_epoch = replace(config, epochs=1)
    _, t_epoch = timed(lambda: fit(experiment.make_model(), train, config=one_epoch), device)
    print("At PyTorch's default precision (on a GPU: TF32 convolutions), as SPARE runs:")
    print(
        f"SPARE distances for all {len(train)} training images (task + group model): "
        f"{t_weights:.2f} s = {t_weights / t_epoch:.2f} training epochs ({t_epoch:.2f} s each)"
    )


if __name__ == "__main__":
    main()
