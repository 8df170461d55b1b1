"""SimCLR pretraining throughput through the study's loop: plain, channels-last, torch.compile.

Each variant runs ``fairkit.training.contrastive.pretrain`` (two torchvision views per image,
the encoder and lightly's projection head, NT-Xent, AdamW) on the same unlabelled pool. A
variant's rate is taken between a short and a longer run, so start-up and compilation cancel:
images/s = extra steps x batch / extra seconds (each image is seen in two views). Beside it
the floor: the step's flops (PyTorch's flop counter) over the measured matrix-product rate,
and the share of a step spent drawing the views. On a GPU bf16 autocast is added.
Usage: python benchmarks/pretrain.py [--steps 20] [--batch 64] [--backbone small_cnn] [--device auto]
"""

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode
from train_step import matmul_rate, sync

from fairkit.config import resolve_device, settings
from fairkit.experiment import Experiment
from fairkit.methods.ssl import unlabelled_pool
from fairkit.models.classifier import encoder_and_head
from fairkit.training import as_tensor, contrastive
from fairkit.training.contrastive import ContrastiveConfig, SimCLR, pretrain, two_views, views

WARM = 3  # steps of the short run


def seconds_per_step(experiment, pool, config) -> float:
    """Mean time of the steps after the first ``WARM`` (start-up and compilation excluded).

    Each step draws its views first, so the times at which ``two_views`` is called mark the
    steps' starts.
    """
    starts, draw = [], contrastive.two_views

    def marked(*args, **kwargs):
        sync(config.device)
        starts.append(time.perf_counter())
        return draw(*args, **kwargs)

    contrastive.two_views = marked
    try:
        encoder, head = encoder_and_head(experiment.make_model())
        pretrain(encoder, pool, features=head.in_features, config=config)
        sync(config.device)
        starts.append(time.perf_counter())
    finally:
        contrastive.two_views = draw
    return (starts[-1] - starts[WARM]) / (len(starts) - 1 - WARM)


def step_flops(experiment, batch: int) -> float:
    encoder, head = encoder_and_head(experiment.make_model())
    model = SimCLR(encoder, features=head.in_features)
    s = experiment.settings
    x = torch.rand(2 * batch, 3 if experiment.modality == "skin" else 1, s.image_size, s.image_size)
    with FlopCounterMode(display=False) as counter:
        model(x).square().mean().backward()
    return counter.get_total_flops()


def view_seconds(pool, config, batch: int) -> float:
    x = as_tensor(pool.images[:batch])
    augment = views(pool.images.shape[-1], config)
    start = time.perf_counter()
    for k in range(5):
        two_views(x, augment, generator_seed=k)
    return (time.perf_counter() - start) / 5


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--backbone", default=None, help="default: quick mode's (small_cnn)")
    parser.add_argument("--modality", default="skin")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    experiment = Experiment(args.modality, settings("quick"), 0, device, backbone=args.backbone)
    pool = unlabelled_pool(experiment, "same_site", n=max(1000, 4 * args.batch))
    variants = {
        "plain": {"channels_last": False},
        "channels-last": {"channels_last": True},
        "compile": {"channels_last": True, "compile": True},
    }
    if device.startswith("cuda"):
        variants["channels-last+bf16"] = {"channels_last": True, "mixed_precision": "bf16"}
    rates = {"fp32": matmul_rate(device, torch.float32)}
    if device.startswith("cuda"):
        rates["bf16"] = matmul_rate(device, torch.bfloat16)
    flops = step_flops(experiment, args.batch)
    base = ContrastiveConfig(batch_size=args.batch, warmup_steps=1, device=device, progress=False)
    share = view_seconds(pool, base, args.batch)
    print(
        f"device: {device}; backbone {experiment.backbone or experiment.settings.backbone}, "
        f"{experiment.settings.image_size} px, batch {args.batch} (x2 views); matmul rate "
        + ", ".join(f"{k} {v / 1e12:.2f} TFLOP/s" for k, v in rates.items())
    )
    print(
        f"{'variant':20} {'images/s':>9} {'ms/step':>8} {'floor ms':>9} {'of floor':>9} {'views':>6}"
    )
    results = {}
    for name, changes in variants.items():
        config = {**base.__dict__, **changes}
        seconds = seconds_per_step(
            experiment, pool, ContrastiveConfig(**{**config, "steps": WARM + args.steps})
        )
        floor = flops / rates["bf16" if "bf16" in name else "fp32"]
        results[name] = args.batch / seconds
        print(
            f"{name:20} {results[name]:9.1f} {1e3 * seconds:8.1f} {1e3 * floor:9.2f} "
            f"{seconds / floor:8.1f}x {share / seconds:6.0%}"
        )
    best = max(results, key=results.get)
    print(f"best variant {best} runs {results[best] / results['plain']:.2f}x the plain step")


if __name__ == "__main__":
    main()
