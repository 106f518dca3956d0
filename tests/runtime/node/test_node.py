"""The node daemon against an in-process link: apps from bundles, state kept on disk."""

from __future__ import annotations

import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest

from corolla.core import ArrayRecord, ConfigError, ErrorCode, Message, RecordDict
from corolla.runtime import GrpcGrid, Link, Node, NodeStatus, make_bundle
from corolla.state import DirectoryBlobStore
from corolla.transport import generate_certificates
from corolla.trust import NodeKey

COUNTER_APP = """
from corolla.client import ClientApp
from corolla.core import Message, MetricRecord, RecordDict

app = ClientApp()


@app.train()
def train(message, context):
    count = int(context.state["counter"]["count"]) + 1 if "counter" in context.state else 1
    context.state = RecordDict({"counter": MetricRecord({"count": count})})
    metrics = MetricRecord({"count": count, "partition": context.node_config["partition-id"]})
    return Message(RecordDict({"metrics": metrics}), reply_to=message)
"""


def _app(root: Path, module: str, client_source: str) -> Path:
    (root / module).mkdir(parents=True)
    (root / module / "__init__.py").write_text("")
    (root / module / "client_app.py").write_text(client_source)
    (root / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""
            [project]
            name = "{module}"
            [tool.corolla.app]
            serverapp = "{module}.client_app:app"
            clientapp = "{module}.client_app:app"
            """
        )
    )
    return root


def _grid_for(link: Link, channel: grpc.Channel, app_dir: Path) -> GrpcGrid:
    blobs = DirectoryBlobStore(link.state_dir / "blobs")
    bundle_hash = blobs.put(make_bundle(app_dir))
    run = link.state.create_run(bundle_hash, {})
    return GrpcGrid(channel, run.run_id, link.issue_run_secret(run.run_id))


def _wait_connected(node: Node) -> int:
    for _ in range(200):
        if node.status is NodeStatus.CONNECTED and node.node_id is not None:
            return node.node_id
        time.sleep(0.05)
    pytest.fail("the node did not connect within 10 s")


def _train(grid: GrpcGrid, node_id: int) -> Message:
    ids = grid.send([Message(RecordDict(), dst_node_id=node_id, message_type="train")])
    replies = list(grid.receive(ids, timeout=30))
    assert len(replies) == 1
    return replies[0]


def test_a_node_keeps_its_id_and_context_state_across_restarts(
    link: Link, appio_channel: grpc.Channel, tmp_path: Path
) -> None:
    # Arrange
    grid = _grid_for(link, appio_channel, _app(tmp_path / "app", "counter_app", COUNTER_APP))
    state_dir = tmp_path / "node"
    config = {"partition-id": 2, "num-partitions": 3}

    # Act
    with Node(link.fleet_address, state_dir, node_config=config) as node:
        node_id = _wait_connected(node)
        counts = [int(_train(grid, node_id).content["metrics"]["count"]) for _ in range(2)]
    with Node(link.fleet_address, state_dir, node_config=config) as restarted:
        rejoined = _wait_connected(restarted)
        after_restart = _train(grid, rejoined)

    # Assert
    assert counts == [1, 2]
    assert rejoined == node_id
    assert after_restart.content["metrics"]["count"] == 3
    assert after_restart.content["metrics"]["partition"] == 2
    # and its key pair, made on its first start, is the one it read after the restart
    assert node.key is not None and restarted.key is not None
    assert restarted.key.public_text == node.key.public_text
    assert (state_dir / NodeKey.FILE).is_file()


def test_a_bundle_that_fails_to_import_gets_an_error_reply(
    link: Link, appio_channel: grpc.Channel, tmp_path: Path
) -> None:
    app_dir = _app(tmp_path / "app", "broken_app", "raise RuntimeError('no import for you')\n")
    grid = _grid_for(link, appio_channel, app_dir)
    with Node(link.fleet_address, tmp_path / "node", metrics_address="127.0.0.1:0") as node:
        reply = _train(grid, _wait_connected(node))
        assert node.metrics_url is not None
        with urllib.request.urlopen(node.metrics_url, timeout=10) as page:
            exposition = page.read().decode()

    assert reply.has_error()
    assert reply.error.code == ErrorCode.APP_LOAD
    assert "no import for you" in reply.error.reason
    # and its metrics count the message and its error
    assert 'corolla_node_messages_total{outcome="error",type="train"} 1.0' in exposition
    assert 'corolla_node_errors_total{code="APP_LOAD"} 1.0' in exposition
    assert 'corolla_node_clientapp_seconds_count{type="train"} 1.0' in exposition
    with pytest.raises(urllib.error.URLError):  # stopped with the node
        urllib.request.urlopen(node.metrics_url, timeout=10)


@pytest.mark.parametrize(
    ("address", "problem"),
    [("0.0.0.0:9101", "beyond this machine"), ("localhost", "not HOST:PORT")],
)
def test_node_metrics_beyond_loopback_or_malformed_are_refused(
    tmp_path: Path, address: str, problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem):
        Node("127.0.0.1:9092", tmp_path / "node", metrics_address=address)


def test_a_node_reconnects_after_the_link_restarts(tmp_path: Path) -> None:
    with Link(
        tmp_path / "link", fleet_address="127.0.0.1:0", control_address="127.0.0.1:0"
    ) as link:
        port = link.fleet_port
        node = Node(link.fleet_address, tmp_path / "node", backoff=(0.05, 0.2)).start()
        try:
            node_id = _wait_connected(node)
            link.stop()
            with Link(
                tmp_path / "link",
                fleet_address=f"127.0.0.1:{port}",
                control_address="127.0.0.1:0",
            ) as again:
                joins: list[int | None] = []
                for _ in range(200):
                    events = again.state.read_events(0)
                    joins = [e.event.node_id for e in events if e.event.kind == "node.join"]
                    if len(joins) == 2:
                        break
                    time.sleep(0.05)
                assert joins == [node_id, node_id]
                assert [n.node_id for n in again.state.list_nodes()] == [node_id]
        finally:
            node.stop()


def test_a_node_reaches_a_link_over_tls(tmp_path: Path) -> None:
    files = generate_certificates(tmp_path / "certs")
    with Link(
        tmp_path / "link",
        fleet_address="127.0.0.1:0",
        control_address="127.0.0.1:0",
        certificates=files.directory,
    ) as link:
        with Node(
            f"localhost:{link.fleet_port}",
            tmp_path / "node",
            root_certificates=files.ca_certificate,
            backoff=(0.05, 0.2),
        ) as node:
            node_id = _wait_connected(node)
        assert [n.node_id for n in link.state.list_nodes()] == [node_id]


def test_a_link_requiring_node_certificates_admits_only_nodes_presenting_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = generate_certificates(tmp_path / "certs")
    with Link(
        tmp_path / "link",
        fleet_address="127.0.0.1:0",
        control_address="127.0.0.1:0",
        certificates=files.directory,
        node_certificates=True,
    ) as link:
        address = f"localhost:{link.fleet_port}"
        with Node(
            address,
            tmp_path / "node",
            root_certificates=files.ca_certificate,
            certificate=files.node_certificate,
            private_key=files.node_key,
            backoff=(0.05, 0.2),
        ) as node:
            node_id = _wait_connected(node)
        without = Node(
            address, tmp_path / "other", root_certificates=files.ca_certificate, backoff=(0.05, 0.2)
        )
        with without:
            time.sleep(1.0)
            assert without.status is not NodeStatus.CONNECTED
        assert [n.node_id for n in link.state.list_nodes()] == [node_id]
    # The node without a certificate retries (as for a link going away), saying what to give.
    assert "give --certificate and --key" in caplog.text


SUM_APP = """
from corolla.client import ClientApp
from corolla.core import Message, MetricRecord, RecordDict

app = ClientApp()


@app.train()
def train(message, context):
    total = float(message.content["arrays"]["w"].sum())
    return Message(RecordDict({"metrics": MetricRecord({"sum": total})}), reply_to=message)
"""


def test_a_node_downloads_arrays_into_memory_and_reuses_them_for_the_next_message(
    link: Link,
    appio_channel: grpc.Channel,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Arrange: an array too large to travel inline, sent twice, then another one.
    from corolla.runtime import _payloads

    pulled: list[str] = []
    real_pull = _payloads.pull_payload

    def counting_pull(pull, sha256, size, metadata=None):  # type: ignore[no-untyped-def]
        pulled.append(sha256)
        return real_pull(pull, sha256, size, metadata)

    monkeypatch.setattr(_payloads, "pull_payload", counting_pull)
    grid = _grid_for(link, appio_channel, _app(tmp_path / "app", "sum_app", SUM_APP))
    first, second = np.arange(400_000, dtype=np.float32), np.ones(400_000, dtype=np.float32)

    def train_on(node_id: int, w: np.ndarray) -> float:
        content = RecordDict({"arrays": ArrayRecord({"w": w})})
        ids = grid.send([Message(content, dst_node_id=node_id, message_type="train")])
        (reply,) = list(grid.receive(ids, timeout=30))
        return float(reply.content["metrics"]["sum"])

    # Act
    with Node(link.fleet_address, tmp_path / "node") as node:
        node_id = _wait_connected(node)
        sums = [train_on(node_id, w) for w in (first, first, second)]

    # Assert
    assert sums == [float(first.sum()), float(first.sum()), 400_000.0]
    assert len(pulled) == 2 and pulled[0] != pulled[1]  # the repeated model came once
    blob_files = [p for p in (tmp_path / "node" / "blobs").rglob("*") if p.is_file()]
    assert blob_files == []  # nothing of the messages went to the node's disk


def test_a_node_connects_through_the_channel_factory_it_is_given(
    link: Link, appio_channel: grpc.Channel, tmp_path: Path
) -> None:
    # Arrange: a factory that counts the channels it opens, to an address the node was
    # not given (the node's own address points nowhere)
    opened: list[grpc.Channel] = []

    def factory() -> grpc.Channel:
        opened.append(grpc.insecure_channel(link.fleet_address))
        return opened[-1]

    grid = _grid_for(link, appio_channel, _app(tmp_path / "app", "counter_app", COUNTER_APP))
    config = {"partition-id": 0, "num-partitions": 1}

    # Act
    with Node(
        "127.0.0.1:1", tmp_path / "node", node_config=config, channel_factory=factory
    ) as node:
        reply = _train(grid, _wait_connected(node))

    # Assert
    assert len(opened) == 1
    assert reply.content["metrics"]["count"] == 1


def test_node_certificates_without_tls_are_refused_on_both_sides(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="give --certificates DIR"):
        Link(tmp_path / "link", node_certificates=True)
    with pytest.raises(ConfigError, match="over TLS"):
        Node("127.0.0.1:9092", tmp_path / "node", certificate="node.pem", private_key="node.key")
