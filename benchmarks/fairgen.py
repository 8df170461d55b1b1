"""FairGen's costs, side by side in one run: a Diffusion-DPO step, then balanced synthesis.

DPO: on the same batch of B pairs (2B images) and the same UNet, the plain step predicts the
noise of the 2B images and takes an optimiser step; the DPO step does the same through
``pair_errors`` and ``dpo_loss`` and adds the frozen reference's forward pass (no gradient,
winners and losers in one batched call). Goal: the DPO step within 2.5x of the plain one.

Synthesis: chapter 5's generator (quick size: UNet (16, 32) at 16 px, conditioned on skin group
and finding) trained --train-steps steps on --n-train skin images whose dark group is 10%; the
plan of ``missing_cells`` (square-root rule) capped to --images; the same plan, seed and
starting noise sampled by DDPM 1000 steps and by each --compare sampler (guidance 2): by default
the chapter's SDE-DPM-Solver++ 20 steps, its ODE form DPM-Solver++ 20, and the ODE solved
almost exactly by DDIM 1000 (is a loss of agreement the solver's error or the ODE's?). Prints
each sampler's images/s and its ratio to DDPM's, and how often the chapter's judges (skin-group
and finding classifiers trained on a fresh real draw as large as the training set; their
balanced accuracy on held-out real images shown first) see the intended group and finding. All
samplers start from the same noise, so their agreements are compared image by image: the
difference with a paired bootstrap 95% interval; "equal agreement" when it includes zero. Goal
for 20-step DPM-Solver++: >= 40x DDPM's images/s at equal agreement on both. A briefly trained
model, not a fresh one: the agreement of noise would say nothing.
Usage: python benchmarks/fairgen.py [--part all|dpo|synthesis] [--pairs 32] [--size 32]
    [--width 16] [--steps 10] [--images 256] [--n-train 1000] [--train-steps 600]
    [--compare dpmsolver_sde:20 dpmsolver:20 ddim:1000] [--device auto]
"""

import argparse
import copy
import time

import numpy as np
import pandas as pd
import torch
from diffusers import DDPMScheduler

from fairkit import rater, seeds
from fairkit.config import resolve_device, settings
from fairkit.data import synth
from fairkit.models import diffusion
from fairkit.studies import fairgen as study
from fairkit.synthesis import synthesise
from fairkit.training import dpo_loss, pair_errors

NAMES = {  # how the printout names each of diffusion.SAMPLERS
    "dpmsolver_sde": "SDE-DPM-Solver++",
    "dpmsolver": "DPM-Solver++ (ODE)",
    "ddim": "DDIM (ODE)",
    "ddpm": "DDPM",
}
CONDITIONS = {
    "skin_type": synth.skin.SKIN_TYPES,
    "diagnosis": synth.skin.CLASSES,
    "sex": ("F", "M"),
    "age_group": ("young", "old"),
}


def timed(step, n: int, device: str) -> float:
    """Seconds per call of ``step`` over ``n`` calls, after two warm-up calls."""
    for _ in range(2):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(n):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / n


def dpo_step(args, device: str) -> None:
    """Print a Diffusion-DPO step's time against a plain diffusion step's, on the same batch."""
    torch.manual_seed(0)
    model = diffusion.ConditionalUNet(
        vocabulary=CONDITIONS,
        image_size=args.size,
        channels=3,
        block_out_channels=(args.width, 2 * args.width),
    ).to(device)
    reference = copy.deepcopy(model).requires_grad_(False).eval()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    cohort = synth.generate("skin", 2 * args.pairs, seed=0, image_size=args.size)
    x = diffusion.to_model_range(cohort.images).to(device)
    x_w, x_l = x[: args.pairs], x[args.pairs :]
    codes = model.conditions.codes(cohort.meta.iloc[: args.pairs]).to(device)
    noise = torch.randn_like(x_w)
    t = torch.randint(1000, (args.pairs,), device=device)
    scheduler = DDPMScheduler(**model.noise_schedule)

    def plain():
        both = torch.cat([noise, noise])
        predicted = model(scheduler.add_noise(x, both, torch.cat([t, t])), torch.cat([t, t]),
                          torch.cat([codes, codes]))  # fmt: skip
        loss = torch.nn.functional.mse_loss(predicted, both)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def dpo():
        model_w, model_l = pair_errors(model, x_w, x_l, codes, noise, t, scheduler=scheduler)
        with torch.no_grad():
            ref_w, ref_l = pair_errors(reference, x_w, x_l, codes, noise, t, scheduler=scheduler)
        loss = dpo_loss(model_w, model_l, ref_w, ref_l, beta=5000.0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    seconds = {
        name: timed(step, args.steps, device) for name, step in (("plain", plain), ("dpo", dpo))
    }
    print(f"{args.pairs} pairs ({2 * args.pairs} images), {args.size} px, UNet widths "
          f"({args.width}, {2 * args.width}), {device}, {torch.get_num_threads()} threads")  # fmt: skip
    print(f"plain diffusion step: {seconds['plain'] * 1000:7.1f} ms")
    print(f"Diffusion-DPO step:   {seconds['dpo'] * 1000:7.1f} ms  (reference forward included)")
    ratio = seconds["dpo"] / seconds["plain"]
    print(f"DPO / plain: {ratio:.2f}x (goal <= 2.5x: {'met' if ratio <= 2.5 else 'not met'})")


def capped(plan: pd.DataFrame, n: int) -> pd.DataFrame:
    """The plan scaled to at most ``n`` images, each cell keeping its share (rounded down)."""
    total = int(plan["synthesise"].sum())
    return plan if total <= n else plan.assign(synthesise=plan["synthesise"] * n // total)


def generator_and_judges(args, device: str):
    """Chapter 5's skin scenario, its generator trained briefly, its judges, the capped plan."""
    sizes = study.sized(settings("quick"), n_train=args.n_train, generator_steps=args.train_steps)
    scenario = study.setting("skin", sizes, seed=0, device=device, minority_fraction=0.1)
    model, history = study.train_generator(scenario, settings=sizes, checkpoint_dir=None,
                                           progress=False)  # fmt: skip
    val, test = study.with_finding(scenario.val), study.with_finding(scenario.test)
    judges = rater.fit_rater(study.judge_cohort(scenario, seed=0), val,
                             attribute=scenario.attribute, make_model=scenario.make_model,
                             config=scenario.config())  # fmt: skip
    plan = capped(study.cells(scenario, rule="sqrt_inverse"), args.images)
    print(f"\nsynthesis: generator trained {args.train_steps} steps on {len(scenario.train)} "
          f"images (last loss {history['loss'].iloc[-50:].mean():.3f}), {sizes.fairgen_size} px, "
          f"{device}; plan of {plan['synthesise'].sum()} images:\n"
          f"{plan.to_string(index=False)}")  # fmt: skip
    for row in rater.rater_validity(judges, test, n_boot=200, seed=0).itertuples():
        print(f"judge of {row.component}: balanced accuracy {row.balanced_accuracy:.1%} "
              f"[{row.lo:.1%}, {row.hi:.1%}] on {row.n} real test images "
              f"({'valid' if row.valid else 'NOT above chance: its agreement means nothing'})")  # fmt: skip
    return scenario, model.to(device), judges, plan


def rate_and_hits(model, judges, plan, *, scenario, sampler: str, steps: int) -> dict:
    """Images/s of one sampler on the plan (after a warm-up), and each image's judge hits."""

    def make(plan, steps):
        return synthesise(model, plan, label=study.FINDING, classes=scenario.train.classes,
                          modality="skin", seed=0, sampler=sampler, steps=steps,
                          progress=False)  # fmt: skip

    make(plan.assign(synthesise=(plan["synthesise"] > 0).astype(int)), 2)  # warm-up
    start = time.perf_counter()
    made = make(plan, steps)
    rate = len(made) / (time.perf_counter() - start)
    intended, probs = judges.intended(made.meta), judges.probabilities(made.images)
    hits = {k: probs[k].argmax(1) == intended[k] for k in ("group", "pathology")}
    print(f"{sampler:>9} {steps:>4} steps: {rate:8.2f} images/s; the judges see the intended "
          f"group in {hits['group'].mean():.1%}, the intended finding in "
          f"{hits['pathology'].mean():.1%} of {len(made)} images")  # fmt: skip
    return {"rate": rate, **hits}


def paired_difference(fast: np.ndarray, slow: np.ndarray, n_boot: int = 2000) -> tuple[str, bool]:
    """Mean of fast - slow per image (same noise) in points, with a bootstrap 95% interval, and
    whether the interval includes zero (equal agreement)."""
    diff = 100 * (fast.astype(float) - slow.astype(float))
    draws = seeds.rng(0, "benchmark agreement").integers(0, len(diff), (n_boot, len(diff)))
    lo, hi = np.percentile(diff[draws].mean(1), [2.5, 97.5])
    equal = lo <= 0 <= hi
    words = "equal agreement" if equal else "not equal"
    return f"{diff.mean():+.1f} points [{lo:+.1f}, {hi:+.1f}] ({words})", equal


def synthesis_rates(args, device: str) -> None:
    """Images/s of each ``--compare`` sampler against DDPM 1000 on one plan, and the judges'
    agreement with each, paired image by image; the goal judged for 20-step DPM-Solver++."""
    scenario, model, judges, plan = generator_and_judges(args, device)
    slow = rate_and_hits(model, judges, plan, scenario=scenario, sampler="ddpm", steps=1000)
    for sampler, steps in args.compare:
        fast = rate_and_hits(model, judges, plan, scenario=scenario, sampler=sampler, steps=steps)
        ratio = fast["rate"] / slow["rate"]
        print(f"{NAMES[sampler]} {steps} / DDPM 1000: {ratio:.0f}x the images/s")
        equal = []
        for k, name in (("group", "group"), ("pathology", "finding")):
            text, same = paired_difference(fast[k], slow[k])
            equal.append(same)
            print(f"  agreement on the {name}, {NAMES[sampler]} {steps} - DDPM 1000 (same plan "
                  f"and starting noise): {text}")  # fmt: skip
        if sampler.startswith("dpmsolver") and steps == 20:
            met = ratio >= 40 and all(equal)
            print(f"  goal (>= 40x at equal judge agreement): {'met' if met else 'not met'}")


def sampler_steps(text: str) -> tuple[str, int]:
    """``sampler:steps`` (e.g. ``dpmsolver_sde:20``) as a pair; an unknown sampler refused."""
    sampler, _, steps = text.partition(":")
    if sampler not in diffusion.SAMPLERS or not steps.isdigit() or int(steps) < 1:
        raise argparse.ArgumentTypeError(
            f"expected SAMPLER:STEPS with SAMPLER one of {diffusion.SAMPLERS}; got {text!r}"
        )
    return sampler, int(steps)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("all", "dpo", "synthesis"), default="all")
    parser.add_argument("--pairs", type=int, default=32, help="DPO: preference pairs per batch")
    parser.add_argument("--size", type=int, default=32, help="DPO: image size")
    parser.add_argument("--width", type=int, default=16, help="DPO: UNet's first width")
    parser.add_argument("--steps", type=int, default=10, help="DPO: timed steps")
    parser.add_argument("--images", type=int, default=256, help="synthesis: the plan's cap")
    parser.add_argument(
        "--n-train",
        type=int,
        default=settings("quick").fairgen_train,
        help="synthesis: the generator's real training images (default: quick mode's)",
    )
    parser.add_argument(
        "--train-steps",
        type=int,
        default=settings("quick").fairgen_diffusion_steps,
        help="synthesis: generator steps (default: quick mode's)",
    )
    parser.add_argument(
        "--compare",
        type=sampler_steps,
        nargs="*",
        default=[("dpmsolver_sde", 20), ("dpmsolver", 20), ("ddim", 1000)],
        help="synthesis: SAMPLER:STEPS compared with DDPM 1000 (default: the chapter's "
        "SDE-DPM-Solver++ 20, the ODE form DPM-Solver++ 20, and the ODE solved by DDIM 1000)",
    )
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    if args.part in ("all", "dpo"):
        dpo_step(args, device)
    if args.part in ("all", "synthesis"):
        synthesis_rates(args, device)


if __name__ == "__main__":
    main()
