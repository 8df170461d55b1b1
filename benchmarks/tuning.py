"""The cost of the one tuning protocol (``fairkit.tuning``) per chapter, and what sharing saves.

Chapter 2 tunes every baseline on one under-represented cohort per modality; chapter 3 tunes
the baselines and SPARE's temperature on its two skin settings. Measured here on one cohort
(skin, the mode's sizes): the trainings and seconds of each method's tuning, then SPARE's
temperature grid twice, side by side: with the distances (DeepFool on the task and group
models) computed once and shared by every temperature, as the study does, and recomputed for
each temperature, as a tuning loop that treats SPARE as a black box would.
Usage: python benchmarks/tuning.py [--mode quick] [--device cpu] [--seed 0]
"""

import argparse
import time

import pandas as pd

from fairkit import methods, tuning
from fairkit.config import resolve_device, settings
from fairkit.experiment import Experiment

CHAPTER_COHORTS = {"02_bias": 3, "03_spare": 2}  # tuned cohorts a chapter run holds


def tuning_cost(experiment: Experiment, names) -> pd.DataFrame:
    """Trainings and seconds of each method's tuning on the experiment's 10% cohort."""
    scenario = experiment.scenario("under", 0.1)
    rows = []
    for name in names:
        started = time.perf_counter()
        method = methods.get(name)
        found = tuning.tune(scenario, method)
        trainings = 0 if hasattr(method, "base") else found.trainings  # reuses its base's
        rows.append(
            {"method": name, "trainings": trainings, "seconds": time.perf_counter() - started}
        )
    return pd.DataFrame(rows)


def spare_grid_seconds(experiment: Experiment, *, shared: bool) -> float:
    """Seconds to tune SPARE's temperatures from a fresh experiment (cohorts included).

    Shared: one experiment remembers the ERM task model, the group model and the distances
    for every temperature. Not shared: each temperature starts from a fresh experiment.
    """

    def fresh():
        return Experiment(experiment.modality, experiment.settings, experiment.seed,
                          experiment.device).scenario("under", 0.1)  # fmt: skip

    started = time.perf_counter()
    if shared:
        tuning.tune(fresh(), methods.Spare())
    else:
        for candidate in tuning.candidates(methods.Spare()):
            fresh().predictions(candidate)
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", default="quick")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    device = resolve_device(args.device)
    experiment = Experiment("skin", settings(args.mode), args.seed, device)
    cost = tuning_cost(experiment, methods.BASELINES)
    print(f"Tuning every baseline on one skin cohort ({args.mode}, {device}, budget "
          f"{tuning.BUDGET} trainings a method):")  # fmt: skip
    print(cost.round(1).to_string(index=False))
    per_cohort = cost["seconds"].sum()
    print(f"one cohort: {cost['trainings'].sum()} trainings, {per_cohort / 60:.1f} min")
    for chapter, cohorts in CHAPTER_COHORTS.items():
        print(f"{chapter}: {cohorts} cohorts a run, about {cohorts * per_cohort / 60:.1f} min "
              "of baseline tuning")  # fmt: skip
    shared = spare_grid_seconds(experiment, shared=True)
    alone = spare_grid_seconds(experiment, shared=False)
    print(f"SPARE's {tuning.BUDGET} temperatures: {alone:.1f} s recomputing the distances "
          f"(and their models) each time, {shared:.1f} s sharing them")  # fmt: skip
    print(f"speed-up of sharing: {alone / shared:.2f}x")


if __name__ == "__main__":
    main()
