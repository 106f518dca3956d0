from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from corolla.core import ConfigError
from corolla.strategy import SelectionPolicy, UniformSelection, sample_size

fractions = st.floats(0.0, 1.0, exclude_min=True)
node_id_lists = st.lists(st.integers(1, 10**6), unique=True, max_size=60)


# sample_size


@pytest.mark.parametrize(
    ("available", "fraction", "min_nodes", "expected"),
    [
        (10, 1.0, 0, 10),
        (10, 0.5, 0, 5),
        (10, 0.5, 7, 7),  # the minimum wins over the fraction
        (10, 0.5, 20, 10),  # but never more than are available
        (10, 0.25, 0, 3),  # fractions round up
        (10, 0.01, 0, 1),
        (3, 0.1, 2, 2),
        (0, 0.5, 2, 0),
        (0, 1.0, 0, 0),
        (100, 0.3, 0, 30),  # 100 * 0.3 is 30.000000000000004 in floating point: still 30
        (10, 0.7, 0, 7),  # 10 * 0.7 is 7.000000000000001
    ],
)
def test_sample_size_examples(
    available: int, fraction: float, min_nodes: int, expected: int
) -> None:
    assert sample_size(available, fraction, min_nodes) == expected


@given(st.integers(0, 10_000), fractions, st.integers(0, 100))
def test_sample_size_is_the_rounded_up_fraction_at_least_the_minimum_at_most_all(
    available: int, fraction: float, min_nodes: int
) -> None:
    num = sample_size(available, fraction, min_nodes)

    assert 0 <= num <= available
    assert num >= min(min_nodes, available)
    # Never fewer than the fraction asks for (up to floating point fuzz) ...
    assert num >= min(math.floor(available * fraction), available)
    # ... and never a node more than the fraction or the minimum asks for.
    assert num <= max(math.ceil(available * fraction), min_nodes)


@given(st.integers(1, 1000), st.integers(0, 10))
def test_a_fraction_of_one_takes_every_node(available: int, min_nodes: int) -> None:
    assert sample_size(available, 1.0, min_nodes) == available


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.0001, 2.0, math.nan, math.inf])
def test_a_fraction_outside_zero_to_one_is_a_config_error(fraction: float) -> None:
    with pytest.raises(ConfigError, match="fraction"):
        sample_size(10, fraction, 1)


def test_a_negative_minimum_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=">= 0"):
        sample_size(10, 0.5, -1)


# UniformSelection


def test_uniform_selection_is_a_selection_policy() -> None:
    policy: SelectionPolicy = UniformSelection()

    assert policy.select([3, 1, 2], 3, np.random.default_rng(0)) == [3, 1, 2]


@given(node_id_lists, st.data(), st.integers(0, 2**32 - 1))
def test_selection_is_unique_available_in_the_listed_order_and_of_the_asked_size(
    node_ids: list[int], data: st.DataObject, seed: int
) -> None:
    num = data.draw(st.integers(0, len(node_ids)))

    chosen = UniformSelection().select(node_ids, num, np.random.default_rng(seed))

    assert len(chosen) == num == len(set(chosen))
    assert chosen == [n for n in node_ids if n in set(chosen)]


@given(node_id_lists, st.data(), st.integers(0, 2**32 - 1))
def test_the_same_seed_gives_the_same_selection(
    node_ids: list[int], data: st.DataObject, seed: int
) -> None:
    num = data.draw(st.integers(0, len(node_ids)))
    policy = UniformSelection()

    first = policy.select(node_ids, num, np.random.default_rng(seed))
    second = policy.select(node_ids, num, np.random.default_rng(seed))

    assert first == second


@given(node_id_lists, st.integers(0, 2**32 - 1), st.data())
def test_the_selection_picks_positions_whatever_the_ids(
    node_ids: list[int], seed: int, data: st.DataObject
) -> None:
    # A simulation's nodes 1..N and a deployment's random ids, listed alike (by node
    # config): the same seed picks the nodes at the same positions.
    num = len(node_ids) // 2
    simulated = list(range(1, len(node_ids) + 1))

    deployed = UniformSelection().select(node_ids, num, np.random.default_rng(seed))
    twins = UniformSelection().select(simulated, num, np.random.default_rng(seed))

    assert [node_ids.index(n) for n in deployed] == [s - 1 for s in twins]


def test_asking_for_all_or_more_returns_every_node_as_listed() -> None:
    rng = np.random.default_rng(0)

    assert UniformSelection().select([5, 2, 9], 3, rng) == [5, 2, 9]
    assert UniformSelection().select([5, 2, 9], 10, rng) == [5, 2, 9]
    assert UniformSelection().select([], 0, rng) == []


def test_taking_every_node_draws_no_randomness() -> None:
    rng = np.random.default_rng(3)
    untouched = np.random.default_rng(3)

    UniformSelection().select([1, 2, 3], 3, rng)

    assert rng.integers(1 << 30) == untouched.integers(1 << 30)


def test_the_selection_is_not_the_caller_list() -> None:
    node_ids = [1, 2, 3]

    chosen = UniformSelection().select(node_ids, 3, np.random.default_rng(0))
    chosen.append(4)

    assert node_ids == [1, 2, 3]


def test_successive_rounds_differ_and_every_node_gets_picked() -> None:
    rng = np.random.default_rng(11)
    nodes = list(range(1, 21))

    rounds = [tuple(UniformSelection().select(nodes, 5, rng)) for _ in range(40)]

    assert len(set(rounds)) > 30
    assert {n for r in rounds for n in r} == set(nodes)


def test_every_node_is_about_equally_likely() -> None:
    rng = np.random.default_rng(2024)
    nodes = list(range(10))
    counts = np.zeros(10)

    for _ in range(4000):
        counts[UniformSelection().select(nodes, 3, rng)] += 1

    # Each node is expected 1200 times; the standard deviation is about 29.
    assert np.all(np.abs(counts - 1200) < 150)
