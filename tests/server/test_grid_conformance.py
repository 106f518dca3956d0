"""One Grid contract, checked against every Grid: the simulation's and the deployment's.

Each test runs against a :class:`GridUnderTest` per implementation, whose nodes all run
the ClientApp of :data:`CLIENT_APP`:

- ``simulation``: a :class:`~corolla.simulation.SimulationGrid` over worker processes;
- ``deployment``: a :class:`~corolla.runtime.GrpcGrid` on a real link, its nodes real
  :class:`~corolla.runtime.Node` daemons that installed the app from its bundle.

What a ServerApp may rely on is what holds for both.
"""

from __future__ import annotations

import contextlib
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from corolla.core import (
    AggregationError,
    ArrayRecord,
    ConfigRecord,
    ErrorCode,
    Message,
    MetricRecord,
    NotEnoughNodesError,
    RecordDict,
)
from corolla.project import ComponentRef
from corolla.runtime import (
    ControlClient,
    GrpcGrid,
    Link,
    LinkLimits,
    Node,
    NodeStatus,
    make_bundle,
)
from corolla.server import Grid, History, RunResult
from corolla.simulation import ProcessExecutor, SimulationGrid
from corolla.state import DirectoryBlobStore
from corolla.transport import channel_options

NUM_NODES = 3
WAIT_S = 60.0

#: Answers ``train`` with its input ``x``, its partition and how many messages it has
#: answered (kept in its context state); ``mode`` in the message's config makes it raise,
#: or take too long.
CLIENT_APP = """
import time

from corolla.client import ClientApp
from corolla.core import Message, MetricRecord, RecordDict

app = ClientApp()


@app.train()
def train(message, context):
    config = message.content["config"]
    mode = config.get("mode", "")
    if mode == "raise":
        raise ValueError("asked to raise")
    if mode == "slow":
        time.sleep(float(config["seconds"]))
    count = int(context.state["count"]["n"]) + 1 if "count" in context.state else 1
    context.state = RecordDict({"count": MetricRecord({"n": count})})
    metrics = MetricRecord(
        {
            "x": float(message.content["metrics"]["x"]),
            "partition": int(context.node_config["partition-id"]),
            "count": count,
        }
    )
    return Message(RecordDict({"metrics": metrics}), reply_to=message)
"""


def _app(root: Path) -> Path:
    (root / "conformance_app").mkdir(parents=True)
    (root / "conformance_app" / "__init__.py").write_text("")
    (root / "conformance_app" / "client_app.py").write_text(textwrap.dedent(CLIENT_APP))
    (root / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [project]
            name = "conformance-app"
            [tool.corolla.app]
            serverapp = "conformance_app.client_app:app"
            clientapp = "conformance_app.client_app:app"
            """
        )
    )
    return root


class XSum:
    """Sums the ``x`` metric of replies; a negative ``x`` is refused."""

    def __init__(self) -> None:
        self.total = 0.0
        self.nodes: list[int] = []

    @property
    def count(self) -> int:
        return len(self.nodes)

    def empty(self) -> XSum:
        return XSum()

    def add(self, content: RecordDict, node_id: int) -> None:
        x = float(content["metrics"]["x"])  # type: ignore[arg-type]
        if x < 0:
            raise AggregationError("x must be >= 0")
        self.total += x
        self.nodes.append(node_id)

    def merge(self, other: XSum) -> None:
        self.total += other.total
        self.nodes += other.nodes


class GridUnderTest:
    """A grid of :data:`NUM_NODES` nodes running :data:`CLIENT_APP`, and how to read what
    its ServerApp reported."""

    def __init__(self, grid: Grid, result: Callable[[], RunResult | None]) -> None:
        self.grid = grid
        self.result = result


@contextlib.contextmanager
def _simulation(tmp_path: Path) -> Iterator[GridUnderTest]:
    app = ComponentRef("conformance_app.client_app:app", str(_app(tmp_path / "app")))

    def attributes(partition: int, num_nodes: int) -> dict[str, Any]:
        return {"site": f"site-{partition}"}

    with ProcessExecutor(app, run_id=7, num_workers=2) as executor:
        grid = SimulationGrid(executor, NUM_NODES, run_id=7, node_attributes=attributes)
        yield GridUnderTest(grid, lambda: grid.result)


@contextlib.contextmanager
def _deployment(tmp_path: Path) -> Iterator[GridUnderTest]:
    import grpc

    app_dir = _app(tmp_path / "app")
    with contextlib.ExitStack() as stack:
        link = stack.enter_context(
            Link(
                tmp_path / "link",
                fleet_address="127.0.0.1:0",
                control_address="127.0.0.1:0",
                limits=LinkLimits(sweep_interval=0.05),
            )
        )
        blobs = DirectoryBlobStore(link.state_dir / "blobs")
        run = link.state.create_run(blobs.put(make_bundle(app_dir)), {})
        nodes = [
            stack.enter_context(
                Node(
                    link.fleet_address,
                    tmp_path / f"node{i}",
                    node_config={"partition-id": i, "num-partitions": NUM_NODES},
                    attributes={"site": f"site-{i}"},
                )
            )
            for i in range(NUM_NODES)
        ]
        deadline = time.monotonic() + WAIT_S
        while not all(n.status is NodeStatus.CONNECTED for n in nodes):
            assert time.monotonic() < deadline, "the nodes did not connect"
            time.sleep(0.05)
        channel = stack.enter_context(
            grpc.insecure_channel(link.serverappio_address, options=channel_options())
        )
        grid = GrpcGrid(channel, run.run_id, link.issue_run_secret(run.run_id))
        client = stack.enter_context(ControlClient(link.control_address))
        yield GridUnderTest(grid, lambda: client.result(run.run_id))


@pytest.fixture(params=["simulation", "deployment"])
def under_test(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GridUnderTest]:
    make = _simulation if request.param == "simulation" else _deployment
    with make(tmp_path) as built:
        yield built


def _train(node_id: int, x: float = 1.0, **config: Any) -> Message:
    content = RecordDict({"metrics": MetricRecord({"x": x}), "config": ConfigRecord(config)})
    return Message(content, dst_node_id=node_id, message_type="train", group_id="1")


def _ready(under_test: GridUnderTest) -> list[int]:
    return under_test.grid.wait_for_nodes(NUM_NODES, WAIT_S)


def test_the_grid_lists_its_nodes_once_each(under_test: GridUnderTest) -> None:
    ids = _ready(under_test)

    assert len(ids) == NUM_NODES == len(set(ids))
    assert under_test.grid.node_ids() == ids


def test_the_grid_lists_its_nodes_by_their_node_config(under_test: GridUnderTest) -> None:
    # Every node carries {"partition-id": i, "num-partitions": 3}: whatever ids the nodes
    # have, they are listed in partition order, as a seeded sample needs them.
    grid = under_test.grid
    ids = _ready(under_test)

    replies = grid.send_and_receive([_train(n) for n in ids], timeout=WAIT_S)

    partition = {r.metadata.src_node_id: r.content["metrics"]["partition"] for r in replies}
    assert [partition[n] for n in ids] == list(range(NUM_NODES))


def test_each_message_gets_one_reply_from_its_node(under_test: GridUnderTest) -> None:
    grid = under_test.grid
    ids = _ready(under_test)

    sent = grid.send([_train(node, x=float(i)) for i, node in enumerate(ids)])
    replies = list(grid.receive(sent, timeout=WAIT_S))

    assert sorted(r.metadata.reply_to_message_id for r in replies) == sorted(sent)
    by_message = {r.metadata.reply_to_message_id: r for r in replies}
    for i, (message_id, node) in enumerate(zip(sent, ids, strict=True)):
        reply = by_message[message_id]
        assert not reply.has_error(), reply.error
        assert reply.metadata.src_node_id == node
        assert reply.metadata.run_id == grid.run_id
        assert reply.content["metrics"]["x"] == float(i)


def test_a_client_app_that_raises_answers_with_an_error_and_the_others_answer(
    under_test: GridUnderTest,
) -> None:
    grid = under_test.grid
    first, *others = _ready(under_test)

    replies = grid.send_and_receive(
        [_train(first, mode="raise"), *(_train(n) for n in others)], timeout=WAIT_S
    )

    errors = [r for r in replies if r.has_error()]
    assert len(replies) == NUM_NODES
    assert [e.metadata.src_node_id for e in errors] == [first]
    assert errors[0].error.code == ErrorCode.CLIENT_APP_RAISED
    assert "asked to raise" in errors[0].error.reason


def test_a_message_to_an_unknown_node_is_answered_with_an_error(
    under_test: GridUnderTest,
) -> None:
    grid = under_test.grid
    ids = _ready(under_test)
    unknown = max(ids) + 1

    replies = grid.send_and_receive([_train(unknown)], timeout=WAIT_S)

    assert len(replies) == 1 and replies[0].has_error()
    assert replies[0].error.code == ErrorCode.NODE_UNAVAILABLE


def test_replies_fold_into_the_aggregator_and_failures_are_counted(
    under_test: GridUnderTest,
) -> None:
    grid = under_test.grid
    first, *others = _ready(under_test)
    refused, *good = others
    messages = [_train(first, mode="raise"), _train(refused, x=-1.0)]
    messages += [_train(n, x=2.0) for n in good]

    reduction = grid.send_and_reduce(messages, XSum(), timeout=WAIT_S)

    assert reduction.num_replies == len(good)
    assert reduction.aggregator.total == 2.0 * len(good)
    codes = {e.metadata.src_node_id: e.error.code for e in reduction.errors}
    assert codes == {first: ErrorCode.CLIENT_APP_RAISED, refused: ErrorCode.INVALID_REPLY}
    assert reduction.missing == []


def test_a_node_too_slow_for_the_timeout_counts_as_a_failure(under_test: GridUnderTest) -> None:
    grid = under_test.grid
    slow, *others = _ready(under_test)
    messages = [_train(slow, mode="slow", seconds=30.0), *(_train(n) for n in others)]

    reduction = grid.send_and_reduce(messages, XSum(), timeout=2.0)

    assert reduction.num_replies == NUM_NODES - 1
    assert reduction.num_failures == 1


def test_a_node_keeps_its_context_state_across_messages(under_test: GridUnderTest) -> None:
    grid = under_test.grid
    (node, *_) = _ready(under_test)

    counts = [
        grid.send_and_receive([_train(node)], timeout=WAIT_S)[0].content["metrics"]["count"]
        for _ in range(3)
    ]

    assert counts == [1, 2, 3]


def test_the_grid_tells_each_node_s_attributes_and_when_it_was_seen(
    under_test: GridUnderTest,
) -> None:
    grid = under_test.grid
    ids = _ready(under_test)
    partitions = {
        r.metadata.src_node_id: int(r.content["metrics"]["partition"])
        for r in grid.send_and_receive([_train(n) for n in ids], timeout=WAIT_S)
    }

    for node in ids:
        assert grid.node_attributes(node) == {"site": f"site-{partitions[node]}"}
        assert isinstance(grid.node_last_seen(node), float)
    assert grid.node_attributes(max(ids) + 1) == {}
    assert grid.node_last_seen(max(ids) + 1) is None


def test_waiting_for_more_nodes_than_there_are_fails_in_time(under_test: GridUnderTest) -> None:
    _ready(under_test)

    with pytest.raises(NotEnoughNodesError):
        under_test.grid.wait_for_nodes(NUM_NODES + 1, timeout=1.0)


def test_the_reported_result_reaches_whoever_started_the_run(under_test: GridUnderTest) -> None:
    history = History()
    history.record(1, "train", MetricRecord({"loss": 0.5}))
    result = RunResult(ArrayRecord({"w": np.arange(5, dtype=np.float32)}), history)

    under_test.grid.report_result(result)
    reported = under_test.result()

    assert reported is not None and reported.arrays is not None
    np.testing.assert_array_equal(reported.arrays["w"], np.arange(5, dtype=np.float32))
    assert reported.history is not None
    assert reported.history.to_dict() == history.to_dict()


def test_checkpoints_are_kept_where_the_grid_keeps_them(under_test: GridUnderTest) -> None:
    checkpoints = under_test.grid.checkpoints
    if checkpoints is None:  # the simulation keeps none: nothing to resume after a crash
        assert isinstance(under_test.grid, SimulationGrid)
        return
    first = RecordDict({"metrics": MetricRecord({"round": 1})})
    second = RecordDict({"metrics": MetricRecord({"round": 2})})

    assert checkpoints.load() is None
    checkpoints.save(1, first)
    checkpoints.save(2, second)

    assert checkpoints.load() == (2, second)
