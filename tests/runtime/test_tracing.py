"""A round's trace crosses the link and a node: the ServerApp's grid, the link and the
node (a real gRPC link and node in this process) each export their spans to the SDK's
in-memory exporter, and the spans chain parent to child through the messages."""

from __future__ import annotations

from pathlib import Path

import grpc
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from corolla.core import ConfigRecord, Event, Message, RecordDict
from corolla.runtime import GrpcGrid, Link, Node, make_bundle
from corolla.state import DirectoryBlobStore
from corolla.telemetry import Tracing
from corolla.transport import channel_options

from .node.test_node import COUNTER_APP, _app, _wait_connected


def _ancestors(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[str]:
    """The names of ``span``'s ancestors, nearest first, then of ``span`` itself."""
    names = [span.name]
    while span.parent is not None:
        span = by_id[span.parent.span_id]
        names.insert(0, span.name)
    return names


def test_a_round_s_trace_goes_from_the_serverapp_through_the_link_and_a_node_and_back(
    tmp_path: Path,
) -> None:
    # Arrange: a link, a node and a run's grid, each tracing into one exporter
    exporter = InMemorySpanExporter()
    link_tracing, node_tracing, grid_tracing = (
        Tracing.to_exporter(exporter, service) for service in ("link", "node", "serverapp")
    )
    app_dir = _app(tmp_path / "app", "counter_app", COUNTER_APP)
    with (
        Link(
            tmp_path / "link",
            fleet_address="127.0.0.1:0",
            control_address="127.0.0.1:0",
            tracing=link_tracing,
        ) as link,
        Node(
            link.fleet_address,
            tmp_path / "node",
            node_config={"partition-id": 0},
            tracing=node_tracing,
        ) as node,
        grpc.insecure_channel(link.serverappio_address, options=channel_options()) as channel,
    ):
        node_id = _wait_connected(node)
        bundle = DirectoryBlobStore(link.state_dir / "blobs").put(make_bundle(app_dir))
        run = link.state.create_run(bundle, {})
        grid = GrpcGrid(
            channel, run.run_id, link.issue_run_secret(run.run_id), tracing=grid_tracing
        )

        # Act: one round, as a strategy runs it
        grid.emit(Event("round.start", run.run_id, 1))
        message = Message(
            RecordDict({"config": ConfigRecord({"lr": 0.1})}),
            dst_node_id=node_id,
            message_type="train",
        )
        replies = list(grid.receive(grid.send([message]), timeout=30))
        grid.emit(Event("round.end", run.run_id, 1))

    # Assert: one trace, rooted in the round, through every hop there and back
    assert len(replies) == 1 and not replies[0].has_error()
    spans = exporter.get_finished_spans()
    by_id = {span.context.span_id: span for span in spans}
    assert len({span.context.trace_id for span in spans}) == 1
    (reply,) = [span for span in spans if span.name == "reply train"]
    assert _ancestors(reply, by_id) == [
        "round 1",
        "send train",
        "link store train",  # the message, stored
        "link forward train",  # and passed on to the node
        "node train",
        "link store train",  # the reply, stored
        "link forward train",  # and passed on to the ServerApp
        "reply train",
    ]
    (clientapp,) = [span for span in spans if span.name == "clientapp train"]
    assert _ancestors(clientapp, by_id)[-2:] == ["node train", "clientapp train"]
    assert reply.attributes is not None and reply.attributes["corolla.node_id"] == node_id
    services = {span.resource.attributes["service.name"] for span in spans}
    assert services == {"link", "node", "serverapp"}
