"""Diffusion samplers side by side on one trained model: speed and condition agreement.

Trains a small conditional model on skin images (skin group and sex as conditions), and a skin
group classifier on real images; then for DDPM-1000, DDIM {10, 20, 50} and DPM-Solver++ {10, 20}
prints seconds per image and how often the classifier finds the requested skin group, and the
speed-up over DDPM at equal agreement. Last, guidance as one batch of 2B against two calls of B.
Usage: python benchmarks/samplers.py [--steps 1500] [--n 64] [--size 16] [--device auto]
"""

import argparse
import time

import torch

from fairkit import counterfactual as cf
from fairkit.config import resolve_device
from fairkit.data import synth
from fairkit.models import diffusion
from fairkit.models.classifier import backbone
from fairkit.training import DiffusionConfig, TrainConfig, fit_attribute, train_diffusion

SAMPLERS = cf.SAMPLER_SETTINGS


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    cohort = synth.generate("skin", 4000, seed=0, image_size=args.size)
    vocabulary = {"skin_group": ("dark", "light"), "sex": ("F", "M")}
    model = diffusion.ConditionalUNet(
        vocabulary=vocabulary, image_size=args.size, channels=3, block_out_channels=(32, 64)
    )
    config = DiffusionConfig(steps=args.steps, batch_size=64, device=device)
    model, history = train_diffusion(model, cohort, config=config)
    model.to(device)
    print(f"model trained {args.steps} steps, last loss {history['loss'].iloc[-50:].mean():.3f}")

    def make(n_classes):
        return backbone("small_cnn", in_channels=3, n_classes=n_classes, image_size=args.size,
                        width=16, seed=0)  # fmt: skip

    train, val = cohort.subset(range(3000)), cohort.subset(range(3000, 4000))
    judge, groups = fit_attribute(
        make, train, val, attribute="skin_group", config=TrainConfig(epochs=3, progress=False)
    )
    wanted = cohort.meta.iloc[: args.n].assign(
        skin_group=["dark", "light"] * (args.n // 2), sex="F"
    )
    table = cf.compare_samplers(
        model, wanted, judge, attribute="skin_group", classes=groups, settings=SAMPLERS
    )
    for row in table.itertuples():
        print(f"  {row.sampler:>9} {row.steps:>4} steps: {row.seconds_per_image * 1000:8.1f} "
              f"ms/image, skin group as requested {row.agreement:.1%}")  # fmt: skip
    ddpm = table.iloc[0]
    for row in table.iloc[1:].itertuples():
        if row.agreement >= ddpm.agreement - 0.02:
            print(f"{row.sampler}-{row.steps} matches DDPM-1000's agreement (within 2 points) "
                  f"{ddpm.seconds_per_image / row.seconds_per_image:.0f}x faster")  # fmt: skip

    codes = model.conditions.codes(wanted)
    x = torch.randn(args.n, 3, args.size, args.size, device=device)
    t = torch.full((args.n,), 500, device=device)
    null = model.conditions.null.expand_as(codes).to(device)
    codes = codes.to(device)
    with torch.no_grad():
        timings = {}
        for name, call in (
            ("one batch of 2B", lambda: diffusion.guided_noise(model, x, t, codes, 2.0)),
            ("two calls of B", lambda: (model(x, t, codes), model(x, t, null))),
        ):
            call()
            start = time.perf_counter()
            for _ in range(10):
                call()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            timings[name] = (time.perf_counter() - start) / 10
    print(
        f"guidance: one batch of 2B {timings['one batch of 2B'] * 1000:.1f} ms, two calls of B "
        f"{timings['two calls of B'] * 1000:.1f} ms: "
        f"{timings['two calls of B'] / timings['one batch of 2B']:.2f}x"
    )


if __name__ == "__main__":
    main()
