"""Named random streams: a run has one seed, and every random choice draws from its own stream.

``stream(seed, "train")`` and ``stream(seed, "val")`` are independent, never collide across seeds
(unlike ``seed * 10 + k`` arithmetic), and adding a new stream leaves every other one unchanged.
The derivation is numpy's ``SeedSequence`` with a spawn key made from the stream's names.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch


def _key(name: str | int) -> int:
    if isinstance(name, bool) or not isinstance(name, (str, int)):
        raise TypeError(f"stream names are strings or integers, got {name!r}")
    if isinstance(name, int):
        if name < 0:
            raise ValueError(f"integer stream names are >= 0, got {name}")
        return name
    return zlib.crc32(name.encode())


def sequence(seed: int, *names: str | int) -> np.random.SeedSequence:
    """The ``SeedSequence`` of the stream ``names`` under the run's ``seed``."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return np.random.SeedSequence(int(seed), spawn_key=tuple(_key(n) for n in names))


def stream(seed: int, *names: str | int) -> int:
    """A 31-bit integer seed for the named stream (for APIs that take an int: sklearn, torch)."""
    return int(sequence(seed, *names).generate_state(1, np.uint32)[0] >> 1)


def rng(seed: int, *names: str | int) -> np.random.Generator:
    """A numpy generator drawing from the named stream."""
    return np.random.default_rng(sequence(seed, *names))


def torch_generator(seed: int, *names: str | int) -> torch.Generator:
    """A CPU torch generator drawing from the named stream."""
    return torch.Generator().manual_seed(stream(seed, *names))
