"""node_order: the order every grid lists its nodes in."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from corolla.server import node_order


def test_nodes_with_the_simulation_s_configs_come_in_partition_order() -> None:
    configs = {
        9_000_000_000_000_000_001: {"partition-id": 2, "num-partitions": 3},
        17: {"partition-id": 0, "num-partitions": 3},
        512: {"partition-id": 1, "num-partitions": 3},
    }

    assert node_order(configs) == [17, 512, 9_000_000_000_000_000_001]


def test_numbers_compare_by_value_and_before_strings() -> None:
    configs = {
        1: {"site": "b"},
        2: {"site": 10},
        3: {"site": 9.5},
        4: {"site": "a"},
        5: {"site": True},
    }

    assert node_order(configs) == [5, 3, 2, 4, 1]


def test_nodes_with_the_same_config_come_in_id_order() -> None:
    assert node_order({30: {}, 10: {}, 20: {"x": 1}}) == [10, 30, 20]


configs = st.dictionaries(
    st.integers(min_value=1, max_value=2**64 - 1),
    st.dictionaries(
        st.sampled_from(["partition-id", "num-partitions", "site"]),
        st.one_of(st.integers(-5, 5), st.floats(-5, 5, allow_nan=False), st.text(max_size=3)),
        max_size=3,
    ),
    max_size=8,
)


@given(configs, st.randoms())
def test_the_order_depends_on_the_nodes_only(nodes: dict, rng: object) -> None:
    items = list(nodes.items())
    rng.shuffle(items)  # type: ignore[attr-defined]

    assert node_order(dict(items)) == node_order(nodes)
    assert sorted(node_order(nodes)) == sorted(nodes)
