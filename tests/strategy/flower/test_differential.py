"""Differential tests: Corolla's strategies against Flower's, fed the same replies.

For every strategy both have, the same random replies are fed over three rounds (so the
server optimizer state matters) to Flower's Message-API strategy (``flwr.serverapp.strategy``)
and to Corolla's; the global arrays must agree within 1e-6 relative tolerance each round.
Bulyan is checked against Flower's original ``aggregate_bulyan`` (iterative Krum, as in the
paper); Flower's Message-API Bulyan picks its updates with one Multi-Krum pass instead.

flwr comes with the ``flower`` extra, which the test environment installs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
from flwr.app import Array as FlArray
from flwr.app import ArrayRecord as FlArrayRecord
from flwr.app import ConfigRecord as FlConfigRecord
from flwr.app import Message as FlMessage
from flwr.app import MetricRecord as FlMetricRecord
from flwr.app import RecordDict as FlRecordDict
from flwr.server.strategy.aggregate import aggregate_bulyan, aggregate_krum
from flwr.serverapp import strategy as fl
from flwr.supercore.task_identity import TaskIdentity

import corolla.strategy as co
from corolla.core import ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from ..rounds import train_round

RTOL = 1e-6
NUM_ROUNDS = 3
LAYOUT: dict[str, tuple[int, ...]] = {"w": (3, 4), "b": (4,), "s": ()}
#: Flower's QFedAvg cannot take 0-d arrays (its in-place ``np.subtract`` gets a scalar).
NO_SCALARS: dict[str, tuple[int, ...]] = {"w": (3, 4), "b": (4,)}

#: One reply: (node id, {name: array}, num-examples, train loss).
Reply = tuple[int, dict[str, np.ndarray], int, float]


def random_replies(
    seed: int, num_nodes: int, layout: dict[str, tuple[int, ...]] = LAYOUT
) -> list[list[Reply]]:
    rng = np.random.default_rng(seed)
    return [
        [
            (
                node,
                {k: rng.normal(size=shape) + 1.0 for k, shape in layout.items()},
                int(rng.integers(1, 200)),
                float(rng.uniform(0.1, 3.0)),
            )
            for node in range(1, num_nodes + 1)
        ]
        for _ in range(NUM_ROUNDS)
    ]


def initial_arrays(layout: dict[str, tuple[int, ...]] = LAYOUT) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(99)
    return {k: rng.normal(size=shape) for k, shape in layout.items()}


@pytest.fixture(autouse=True)
def flower_task_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flower's messages read the run from the process's task identity; a test has none."""
    for name, value in [("_run_id", 1), ("_node_id", 0), ("_task_id", 1)]:
        monkeypatch.setattr(TaskIdentity, name, value)


class FlowerGrid:
    """Just what Flower's ``configure_train`` asks of a grid: the node ids."""

    def __init__(self, num_nodes: int) -> None:
        self._ids = list(range(1, num_nodes + 1))

    def get_node_ids(self) -> list[int]:
        return list(self._ids)


def fl_record(arrays: dict[str, np.ndarray]) -> Any:
    return FlArrayRecord({k: FlArray(np.asarray(v)) for k, v in arrays.items()})


def fl_reply(reply: Reply) -> Any:
    _, arrays, weight, loss = reply
    content = FlRecordDict(
        {
            "arrays": fl_record(arrays),
            "metrics": FlMetricRecord({"num-examples": weight, "train_loss": loss}),
        }
    )
    return FlMessage(content=content, dst_node_id=0, message_type="train")


def co_reply(reply: Reply) -> tuple[int, RecordDict]:
    node, arrays, weight, loss = reply
    metrics = MetricRecord({"num-examples": weight, "train_loss": loss})
    return node, RecordDict({"arrays": ArrayRecord(arrays), "metrics": metrics})


def run_flower(strategy: Any, initial: dict[str, np.ndarray], rounds: list[list[Reply]]) -> list:
    arrays = fl_record(initial)
    out = []
    for server_round, replies in enumerate(rounds, start=1):
        grid = FlowerGrid(len(replies))
        list(strategy.configure_train(server_round, arrays, FlConfigRecord(), grid))
        new, _ = strategy.aggregate_train(server_round, [fl_reply(r) for r in replies])
        arrays = new if new is not None else arrays
        out.append({k: np.asarray(v.numpy()) for k, v in arrays.items()})
    return out


def run_corolla(strategy: Any, initial: dict[str, np.ndarray], rounds: list[list[Reply]]) -> list:
    arrays = ArrayRecord(initial)
    out = []
    for server_round, replies in enumerate(rounds, start=1):
        arrays, _, _ = train_round(strategy, server_round, arrays, [co_reply(r) for r in replies])
        out.append({k: np.asarray(v) for k, v in arrays.items()})
    return out


def assert_same_rounds(
    got: Sequence[dict], expected: Sequence[dict], *, scale_relative: bool = False
) -> None:
    """Equal within RTOL of each element, or of the array's largest magnitude when
    ``scale_relative`` (for float32, where Flower's float32 sums cancel near zero)."""
    assert len(got) == len(expected) == NUM_ROUNDS
    for server_round, (a, b) in enumerate(zip(got, expected, strict=True), start=1):
        assert list(a) == list(b)
        for name in a:
            atol = RTOL * float(np.max(np.abs(b[name]), initial=0.0)) if scale_relative else 0
            np.testing.assert_allclose(
                a[name], b[name], rtol=RTOL, atol=atol, err_msg=f"round {server_round}, {name!r}"
            )


#: (name, Flower factory, Corolla factory, number of nodes per round[, layout])
PAIRS: list[tuple[Any, ...]] = [
    ("FedAvg", lambda: fl.FedAvg(), lambda: co.FedAvg(), 5),
    ("FedProx", lambda: fl.FedProx(proximal_mu=0.1), lambda: co.FedProx(proximal_mu=0.1), 5),
    (
        "FedAvgM",
        lambda: fl.FedAvgM(server_learning_rate=0.7, server_momentum=0.9),
        lambda: co.FedAvgM(server_learning_rate=0.7, server_momentum=0.9),
        5,
    ),
    ("FedAdagrad", lambda: fl.FedAdagrad(), lambda: co.FedAdagrad(), 5),
    ("FedAdam", lambda: fl.FedAdam(), lambda: co.FedAdam(), 5),
    ("FedYogi", lambda: fl.FedYogi(), lambda: co.FedYogi(), 5),
    (
        "FedAdam (custom)",
        lambda: fl.FedAdam(eta=0.03, beta_1=0.5, beta_2=0.9, tau=1e-2),
        lambda: co.FedAdam(eta=0.03, beta_1=0.5, beta_2=0.9, tau=1e-2),
        5,
    ),
    (
        "FedYogi (custom)",
        lambda: fl.FedYogi(eta=0.3, beta_1=0.8, beta_2=0.95, tau=1e-4),
        lambda: co.FedYogi(eta=0.3, beta_1=0.8, beta_2=0.95, tau=1e-4),
        5,
    ),
    ("FedMedian", lambda: fl.FedMedian(), lambda: co.FedMedian(), 6),
    ("FedTrimmedAvg", lambda: fl.FedTrimmedAvg(beta=0.2), lambda: co.FedTrimmedAvg(beta=0.2), 10),
    (
        "Krum",
        lambda: fl.Krum(num_malicious_nodes=1),
        lambda: co.Krum(num_malicious_nodes=1),
        6,
    ),
    (
        "MultiKrum",
        lambda: fl.MultiKrum(num_malicious_nodes=1, num_nodes_to_select=3),
        lambda: co.MultiKrum(num_malicious_nodes=1, num_nodes_to_select=3),
        6,
    ),
    (
        "QFedAvg",
        lambda: fl.QFedAvg(client_learning_rate=0.1, q=0.2),
        lambda: co.QFedAvg(client_learning_rate=0.1, q=0.2),
        5,
        NO_SCALARS,
    ),
    (
        "QFedAvg (q=2)",
        lambda: fl.QFedAvg(client_learning_rate=0.01, q=2.0),
        lambda: co.QFedAvg(client_learning_rate=0.01, q=2.0),
        7,
        NO_SCALARS,
    ),
]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    ("flower", "corolla", "num_nodes", "layout"),
    [pytest.param(*pair[1:4], (pair[4:] or (LAYOUT,))[0], id=pair[0]) for pair in PAIRS],
)
def test_corolla_matches_flower_over_three_rounds(
    flower: Callable[[], Any],
    corolla: Callable[[], Any],
    num_nodes: int,
    layout: dict[str, tuple[int, ...]],
    seed: int,
) -> None:
    rounds = random_replies(seed, num_nodes, layout)
    initial = initial_arrays(layout)

    expected = run_flower(flower(), initial, rounds)
    got = run_corolla(corolla(), initial, rounds)

    assert_same_rounds(got, expected)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("num_nodes", "num_malicious"), [(7, 1), (11, 2)])
def test_bulyan_matches_flowers_aggregate_bulyan(
    seed: int, num_nodes: int, num_malicious: int
) -> None:
    rounds = random_replies(seed, num_nodes)
    names = list(LAYOUT)

    expected = []
    for replies in rounds:
        results = [([arrays[k] for k in names], weight) for _, arrays, weight, _ in replies]
        layers = aggregate_bulyan(results, num_malicious, aggregate_krum, to_keep=0)
        expected.append(dict(zip(names, layers, strict=True)))
    got = run_corolla(co.Bulyan(num_malicious_nodes=num_malicious), initial_arrays(), rounds)

    assert_same_rounds(got, expected)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weighted_average_matches_flower_in_float32(seed: int) -> None:
    rng = np.random.default_rng(seed)
    initial = {k: v.astype(np.float32) for k, v in initial_arrays().items()}
    rounds = [
        [
            (n, {k: rng.normal(size=s).astype(np.float32) for k, s in LAYOUT.items()}, n * 7, 1.0)
            for n in range(1, 6)
        ]
        for _ in range(NUM_ROUNDS)
    ]

    expected = run_flower(fl.FedAvg(), initial, rounds)
    got = run_corolla(co.FedAvg(), initial, rounds)

    assert all(a[k].dtype == np.float32 for a in got for k in a)
    assert_same_rounds(got, expected, scale_relative=True)


def test_corolla_config_carries_proximal_mu_like_flower() -> None:
    initial = initial_arrays()
    grid = FlowerGrid(3)

    [message, *_] = fl.FedProx(proximal_mu=0.25).configure_train(
        1, fl_record(initial), FlConfigRecord({"lr": 0.1}), grid
    )
    _, _, [ours, *_] = train_round(
        co.FedProx(proximal_mu=0.25),
        1,
        ArrayRecord(initial),
        [],
        num_nodes=3,
        config=ConfigRecord({"lr": 0.1, "server-round": 1}),  # as Strategy.start sends it
    )

    assert dict(message.content["config"]) == dict(ours.content["config"])
