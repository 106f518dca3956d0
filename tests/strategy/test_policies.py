from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from corolla.core import ConfigError, ConfigRecord
from corolla.strategy import (
    AttributeSelection,
    FedAvg,
    NodeDirectory,
    RecentlySeenSelection,
    WeightedSelection,
    attribute_weight,
)

from .rounds import StaticGrid
from .test_fedopt import INITIAL

ATTRIBUTES: dict[int, dict[str, Any]] = {
    1: {"num-examples": 10, "tags": "gpu,eu", "region": "eu"},
    2: {"num-examples": 0, "tags": ["cpu"], "region": "us"},
    3: {"num-examples": 90, "tags": ["gpu", "us"], "region": "us"},
    4: {"region": "eu"},
}


class DirectoryGrid(StaticGrid):
    def node_attributes(self, node_id: int) -> dict[str, Any]:
        return ATTRIBUTES.get(node_id, {})

    def node_last_seen(self, node_id: int) -> float | None:
        return {1: 100.0, 2: 50.0, 3: 95.0}.get(node_id)


def test_every_grid_is_a_node_directory_that_knows_nothing_by_default() -> None:
    rich, plain = DirectoryGrid([1, 2, 3, 4]), StaticGrid([1, 2])

    assert isinstance(rich, NodeDirectory) and isinstance(plain, NodeDirectory)
    assert rich.node_attributes(1)["region"] == "eu"
    assert plain.node_attributes(1) == {}
    assert rich.node_last_seen(2) == 50.0 and plain.node_last_seen(2) is None


# WeightedSelection


def test_weighted_selection_follows_the_weights() -> None:
    policy = WeightedSelection({1: 1.0, 2: 3.0, 3: 0.0})
    rng = np.random.default_rng(0)

    counts = Counter(policy.select([1, 2, 3], 1, rng)[0] for _ in range(4000))

    assert counts[3] == 0
    assert counts[2] / counts[1] == pytest.approx(3.0, rel=0.15)


def test_zero_weights_are_chosen_only_when_the_positive_run_out() -> None:
    policy = WeightedSelection(attribute_weight(DirectoryGrid([]).node_attributes))

    chosen = policy.select([1, 2, 3, 4], 3, np.random.default_rng(1))

    assert {1, 3} <= set(chosen) and len(chosen) == 3


@given(st.lists(st.integers(1, 50), unique=True, min_size=1, max_size=20), st.data())
def test_weighted_selection_is_reproducible_and_well_formed(
    ids: list[int], data: st.DataObject
) -> None:
    num = data.draw(st.integers(0, len(ids)))
    seed = data.draw(st.integers(0, 2**32 - 1))
    policy = WeightedSelection(lambda n: float(n % 4))

    first = policy.select(ids, num, np.random.default_rng(seed))
    again = policy.select(ids, num, np.random.default_rng(seed))

    assert first == again == [n for n in ids if n in set(first)]
    assert len(first) == num == len(set(first))


def test_negative_weights_are_rejected() -> None:
    with pytest.raises(ConfigError):
        WeightedSelection({1: -1.0, 2: 1.0}).select([1, 2], 1, np.random.default_rng(0))


# AttributeSelection


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"tags": ["gpu"]}, [1, 3]),
        ({"tags": ["gpu", "us"]}, [3]),
        ({"require": {"region": "eu"}}, [1, 4]),
        ({"predicate": lambda a: a.get("num-examples", 0) > 5}, [1, 3]),
        ({"tags": ["tpu"]}, []),
    ],
)
def test_attribute_selection_keeps_only_matching_nodes(
    options: dict[str, Any], expected: list[int]
) -> None:
    policy = AttributeSelection(DirectoryGrid([]).node_attributes, **options)

    assert policy.select([1, 2, 3, 4], 4, np.random.default_rng(0)) == expected


def test_attribute_selection_hands_the_choice_to_the_inner_policy() -> None:
    policy = AttributeSelection(
        ATTRIBUTES.__getitem__, tags=["gpu"], inner=WeightedSelection({1: 0.0, 3: 1.0})
    )

    assert policy.select([1, 2, 3], 1, np.random.default_rng(0)) == [3]


# RecentlySeenSelection


def test_only_recently_seen_nodes_are_chosen() -> None:
    grid = DirectoryGrid([1, 2, 3, 4])
    policy = RecentlySeenSelection(grid.node_last_seen, max_age=10.0, clock=lambda: 101.0)

    assert policy.select([1, 2, 3, 4], 4, np.random.default_rng(0)) == [1, 3]
    assert len(policy.select([1, 2, 3, 4], 1, np.random.default_rng(0))) == 1


def test_invalid_max_age_is_rejected() -> None:
    with pytest.raises(ConfigError):
        RecentlySeenSelection(lambda n: None, max_age=-1.0)


def test_fedavg_samples_through_a_policy() -> None:
    grid = DirectoryGrid([1, 2, 3, 4])
    strategy = FedAvg(selection=AttributeSelection(grid.node_attributes, tags=["gpu"]), seed=0)

    plan = strategy.configure_train(1, INITIAL, ConfigRecord(), grid)

    assert sorted(m.metadata.dst_node_id for m in plan.messages) == [1, 3]
