"""Named random streams: independent, stable, and refusing what is not a seed."""

import numpy as np
import pytest

from fairkit import seeds


def test_streams_are_stable_and_distinct():
    assert seeds.stream(0, "train") == seeds.stream(0, "train")
    drawn = {seeds.stream(s, name) for s in range(20) for name in ("train", "val", "test")}
    assert len(drawn) == 60  # no collisions across seeds and names (seed*10+k had them)


def test_integer_names_give_per_step_streams():
    a, b = seeds.torch_generator(3, "epoch order", 0), seeds.torch_generator(3, "epoch order", 1)
    assert not np.array_equal(a.initial_seed(), b.initial_seed())
    assert seeds.rng(3, "x", 5).random() == seeds.rng(3, "x", 5).random()


def test_a_seed_fits_sklearn_and_torch():
    value = seeds.stream(2**40, "anything")
    assert 0 <= value < 2**31


@pytest.mark.parametrize("bad", [-1, 1.5, True, "0", None])
def test_bad_seed_is_refused(bad):
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        seeds.stream(bad, "train")


@pytest.mark.parametrize("bad", [1.0, -2, None])
def test_bad_stream_name_is_refused(bad):
    with pytest.raises((TypeError, ValueError), match="stream names"):
        seeds.rng(0, bad)
