"""Training throughput of ResNet-18 and VGG-11 at 64 px: plain, channels-last, torch.compile.

Each variant runs the training step of fairkit's loop (forward, cross-entropy, backward, AdamW)
on the same batch; the time per step is set beside its floor, the step's flops (PyTorch's flop
counter) over the measured matrix-product rate. On a GPU bf16 autocast is added.
Usage: python benchmarks/train_step.py [--steps 10] [--batch 64] [--device auto]
"""

import argparse
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from fairkit.config import resolve_device
from fairkit.models.classifier import backbone

SIZE, CLASSES = 64, 4


def matmul_rate(device: str, dtype: torch.dtype) -> float:
    """Sustained flop/s of a large matrix product: the arithmetic ceiling of this device."""
    n = 2048 if device == "cpu" else 8192
    a, b = (
        torch.randn(n, n, device=device, dtype=dtype),
        torch.randn(n, n, device=device, dtype=dtype),
    )
    for _ in range(2):
        a @ b
    sync(device)
    reps = 3 if device == "cpu" else 20
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - start)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def make_step(model, optimizer, device, bf16: bool):
    def step(x, y):
        with torch.autocast(
            device_type="cuda" if device.startswith("cuda") else "cpu",
            dtype=torch.bfloat16,
            enabled=bf16,
        ):
            loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def measure(name: str, variant: str, device: str, batch: int, steps: int) -> dict:
    torch.manual_seed(0)
    model = backbone(name, in_channels=3, n_classes=CLASSES, image_size=SIZE).to(device)
    x = torch.rand(batch, 3, SIZE, SIZE, device=device)
    y = torch.randint(0, CLASSES, (batch,), device=device)
    if "channels-last" in variant or variant == "compile":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    run = torch.compile(model) if variant == "compile" else model
    step = make_step(run, optimizer, device, bf16="bf16" in variant)
    with FlopCounterMode(display=False) as counter:
        make_step(model, torch.optim.SGD(model.parameters(), lr=0), device, False)(x, y)
    flops = counter.get_total_flops()
    for _ in range(3):  # warm-up (and compilation)
        step(x, y)
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step(x, y)
    sync(device)
    seconds = (time.perf_counter() - start) / steps
    return {
        "model": name,
        "variant": variant,
        "images/s": batch / seconds,
        "s/step": seconds,
        "flops": flops,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    variants = ["plain", "channels-last", "compile"]
    if device.startswith("cuda"):
        variants += ["channels-last+bf16"]
        torch.backends.cudnn.benchmark = True
        # cuDNN runs fp32 convolutions on TF32 tensor cores by default; the fp32 floor must use
        # the same arithmetic, or steps "beat" it.
        torch.backends.cuda.matmul.allow_tf32 = True
    rates = {"fp32": matmul_rate(device, torch.float32)}
    if device.startswith("cuda"):
        rates["bf16"] = matmul_rate(device, torch.bfloat16)
    print(
        f"device: {device}; matmul rate: "
        + ", ".join(f"{k} {v / 1e12:.2f} TFLOP/s" for k, v in rates.items())
    )
    print(
        f"{'model':10} {'variant':20} {'images/s':>9} {'ms/step':>8} {'floor ms':>9} {'of floor':>9}"
    )
    results = []
    for name in ("resnet18", "vgg11"):
        for variant in variants:
            r = measure(name, variant, device, args.batch, args.steps)
            floor = r["flops"] / rates["bf16" if "bf16" in variant else "fp32"]
            results.append(r)
            print(
                f"{name:10} {variant:20} {r['images/s']:9.1f} {1e3 * r['s/step']:8.1f} {1e3 * floor:9.2f} {r['s/step'] / floor:8.1f}x"
            )
    for name in ("resnet18", "vgg11"):
        base = next(r for r in results if r["model"] == name and r["variant"] == "plain")
        best = max((r for r in results if r["model"] == name), key=lambda r: r["images/s"])
        print(
            f"{name}: best variant {best['variant']} runs {best['images/s'] / base['images/s']:.2f}x the plain step"
        )


if __name__ == "__main__":
    main()
