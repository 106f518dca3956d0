from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from corolla.core._errors import ConfigError
from corolla.data import (
    dirichlet_partition,
    iid_partition,
    power_law_partition,
    shard_partition,
)
from corolla.data._partitioners import power_law_sizes

from .strategies import assert_exact_cover, assert_same_partitions, label_arrays, seeds

FAST = settings(deadline=None, max_examples=60)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# --- iid_partition ---------------------------------------------------------------------------


@FAST
@given(num_samples=st.integers(1, 500), num_partitions=st.integers(1, 20), seed=seeds)
def test_iid_covers_every_sample_once_with_even_sizes(
    num_samples: int, num_partitions: int, seed: int
) -> None:
    assume(num_samples >= num_partitions)

    parts = iid_partition(num_samples, num_partitions, rng(seed))

    assert len(parts) == num_partitions
    assert_exact_cover(parts, num_samples)
    sizes = [p.size for p in parts]
    assert max(sizes) - min(sizes) <= 1


@FAST
@given(num_samples=st.integers(2, 300), num_partitions=st.integers(1, 10), seed=seeds)
def test_iid_is_deterministic_for_a_seed(num_samples: int, num_partitions: int, seed: int) -> None:
    assume(num_samples >= num_partitions)

    first = iid_partition(num_samples, num_partitions, rng(seed))
    second = iid_partition(num_samples, num_partitions, rng(seed))

    assert_same_partitions(first, second)


def test_iid_differs_between_seeds() -> None:
    first = iid_partition(1000, 4, rng(1))
    second = iid_partition(1000, 4, rng(2))

    assert not np.array_equal(first[0], second[0])


# --- dirichlet_partition ---------------------------------------------------------------------


@FAST
@given(
    labels=label_arrays(min_size=1, max_size=300),
    num_partitions=st.integers(1, 10),
    alpha=st.floats(0.05, 100.0),
    self_balancing=st.booleans(),
    seed=seeds,
)
def test_dirichlet_covers_every_sample_once(
    labels: np.ndarray, num_partitions: int, alpha: float, self_balancing: bool, seed: int
) -> None:
    parts = dirichlet_partition(
        labels,
        num_partitions,
        alpha,
        rng(seed),
        min_partition_size=0,
        self_balancing=self_balancing,
    )

    assert len(parts) == num_partitions
    assert_exact_cover(parts, labels.size)


@FAST
@given(
    labels=label_arrays(min_size=300, max_size=300),
    num_partitions=st.integers(1, 10),
    alpha=st.floats(0.5, 100.0),
    seed=seeds,
)
def test_dirichlet_honours_min_partition_size_and_seed(
    labels: np.ndarray, num_partitions: int, alpha: float, seed: int
) -> None:
    first = dirichlet_partition(labels, num_partitions, alpha, rng(seed), min_partition_size=2)
    second = dirichlet_partition(labels, num_partitions, alpha, rng(seed), min_partition_size=2)

    assert_exact_cover(first, labels.size)
    assert min(p.size for p in first) >= 2
    assert_same_partitions(first, second)


def _mean_label_skew(labels: np.ndarray, alpha: float) -> float:
    """Mean total-variation distance between each partition's label mix and the global mix."""
    parts = dirichlet_partition(labels, 10, alpha, rng(1234), min_partition_size=1)
    overall = np.bincount(labels, minlength=10) / labels.size
    distances = [
        0.5 * np.abs(np.bincount(labels[p], minlength=10) / p.size - overall).sum() for p in parts
    ]
    return float(np.mean(distances))


def test_dirichlet_small_alpha_is_skewed_and_large_alpha_near_uniform() -> None:
    labels = np.repeat(np.arange(10), 200)

    skewed = _mean_label_skew(labels, alpha=0.1)
    uniform = _mean_label_skew(labels, alpha=1000.0)

    assert skewed > 0.5
    assert uniform < 0.1


def test_dirichlet_self_balancing_caps_sizes() -> None:
    labels = np.repeat(np.arange(10), 100)
    cap = labels.size / 5

    parts = dirichlet_partition(labels, 5, 0.2, rng(3), self_balancing=True)

    # A partition stops growing once at the cap; only the class that crossed it overshoots.
    assert max(p.size for p in parts) <= cap + 100


def test_dirichlet_gives_up_after_max_tries_with_a_clear_error() -> None:
    labels = np.repeat(np.arange(2), 100)

    with pytest.raises(ConfigError, match="no draw in 5 tries"):
        dirichlet_partition(labels, 10, 0.01, rng(), min_partition_size=20, max_tries=5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": -1.0}, "alpha"),
        ({"alpha": float("nan")}, "alpha"),
        ({"alpha": float("inf")}, "alpha"),
        ({"num_partitions": 0}, "num_partitions"),
        ({"num_partitions": 2.5}, "num_partitions"),
        ({"min_partition_size": -1}, "min_partition_size"),
        ({"min_partition_size": 60}, "needs at least"),
        ({"max_tries": 0}, "max_tries"),
        ({"labels": np.zeros((10, 10), dtype=np.int64)}, "1-D"),
        ({"labels": np.zeros(100)}, "integers"),
        ({"labels": np.array([], dtype=np.int64)}, "empty"),
        ({"rng": 42}, "Generator"),
        ({"rng": np.random.RandomState(0)}, "Generator"),
    ],
)
def test_dirichlet_rejects_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "labels": np.repeat(np.arange(4), 25),
        "num_partitions": 2,
        "alpha": 0.5,
        "rng": rng(),
    }
    args.update(kwargs)

    with pytest.raises(ConfigError, match=message):
        dirichlet_partition(**args)  # type: ignore[arg-type]


# --- shard_partition -------------------------------------------------------------------------


@FAST
@given(
    labels=label_arrays(min_size=1, max_size=300),
    num_partitions=st.integers(1, 10),
    shards=st.integers(1, 4),
    seed=seeds,
)
def test_shards_cover_every_sample_once_in_equal_shares(
    labels: np.ndarray, num_partitions: int, shards: int, seed: int
) -> None:
    num_shards = num_partitions * shards
    assume(labels.size >= num_shards)

    parts = shard_partition(labels, num_partitions, shards, rng(seed))

    assert len(parts) == num_partitions
    assert_exact_cover(parts, labels.size)
    shard_size = labels.size // num_shards
    for part in parts:
        assert shards * shard_size <= part.size <= shards * (shard_size + 1)


@FAST
@given(
    num_classes=st.integers(1, 10),
    per_class=st.integers(1, 40),
    num_partitions=st.integers(1, 10),
    shards=st.integers(1, 3),
    seed=seeds,
)
def test_shards_give_each_partition_at_most_two_labels_per_shard(
    num_classes: int, per_class: int, num_partitions: int, shards: int, seed: int
) -> None:
    labels = np.repeat(np.arange(num_classes), per_class)
    num_shards = num_partitions * shards
    # A shard spans at most two labels only if no class is smaller than a shard.
    assume(labels.size >= num_shards and -(-labels.size // num_shards) <= per_class)

    first = shard_partition(labels, num_partitions, shards, rng(seed))
    second = shard_partition(labels, num_partitions, shards, rng(seed))

    for part in first:
        assert np.unique(labels[part]).size <= 2 * shards
    assert_same_partitions(first, second)


def test_shards_reproduce_the_pathological_mcmahan_split() -> None:
    labels = np.repeat(np.arange(10), 60)

    parts = shard_partition(labels, 10, 2, rng(7))

    # 600 samples, 20 shards of 30: each shard is a single label, each client at most two.
    assert all(np.unique(labels[p]).size <= 2 for p in parts)
    assert all(p.size == 60 for p in parts)


@pytest.mark.parametrize(
    ("num_partitions", "shards", "message"),
    [(0, 2, "num_partitions"), (2, 0, "shards_per_partition"), (10, 2, "needs at least 20")],
)
def test_shards_reject_bad_arguments(num_partitions: int, shards: int, message: str) -> None:
    labels = np.arange(10)

    with pytest.raises(ConfigError, match=message):
        shard_partition(labels, num_partitions, shards, rng())


# --- power_law_partition ---------------------------------------------------------------------


@FAST
@given(
    num_samples=st.integers(1, 1000),
    num_partitions=st.integers(1, 30),
    exponent=st.floats(0.0, 3.0),
    min_size=st.integers(1, 5),
    seed=seeds,
)
def test_power_law_covers_every_sample_once_with_power_law_sizes(
    num_samples: int, num_partitions: int, exponent: float, min_size: int, seed: int
) -> None:
    assume(num_samples >= num_partitions * min_size)

    parts = power_law_partition(
        num_samples, num_partitions, rng(seed), exponent=exponent, min_partition_size=min_size
    )

    assert_exact_cover(parts, num_samples)
    by_rank = np.sort([p.size for p in parts])[::-1]
    assert by_rank[-1] >= min_size
    ranks = np.arange(1, num_partitions + 1, dtype=np.float64)
    spare = num_samples - num_partitions * min_size
    ideal = min_size + spare * ranks**-exponent / (ranks**-exponent).sum()
    assert np.all(np.abs(by_rank - ideal) < 1.0)


def test_power_law_sizes_are_skewed_and_exponent_zero_is_even() -> None:
    skewed = power_law_sizes(10_000, 10, exponent=1.5, min_partition_size=10)
    even = power_law_sizes(10_000, 10, exponent=0.0, min_partition_size=10)

    assert skewed.sum() == even.sum() == 10_000
    assert np.all(np.diff(skewed) <= 0)
    assert skewed[0] > 10 * skewed[-1]
    assert set(even.tolist()) == {1000}


def test_power_law_is_deterministic_and_shuffles_which_partition_is_large() -> None:
    first = power_law_partition(1000, 8, rng(5))
    second = power_law_partition(1000, 8, rng(5))
    largest = {
        int(np.argmax([p.size for p in power_law_partition(1000, 8, rng(s))])) for s in range(20)
    }

    assert_same_partitions(first, second)
    assert len(largest) > 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"exponent": -0.5}, "exponent"),
        ({"exponent": float("nan")}, "exponent"),
        ({"min_partition_size": 0}, "min_partition_size"),
        ({"min_partition_size": 30}, "needs at least"),
        ({"num_partitions": 0}, "num_partitions"),
        ({"num_samples": True}, "integer"),
    ],
)
def test_power_law_rejects_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"num_samples": 100, "num_partitions": 4, "rng": rng()}
    args.update(kwargs)

    with pytest.raises(ConfigError, match=message):
        power_law_partition(**args)  # type: ignore[arg-type]


def test_iid_rejects_more_partitions_than_samples() -> None:
    with pytest.raises(ConfigError, match="needs at least 5"):
        iid_partition(4, 5, rng())
