"""The traces of a simulation's rounds, read back with the SDK's in-memory exporter."""

from __future__ import annotations

import collections

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from corolla.simulation import run_simulation
from corolla.telemetry import Tracing

from ..simulation import apps


def _parent_chain(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[str]:
    """The names of ``span``'s ancestors, nearest first."""
    names = []
    while span.parent is not None:
        span = by_id[span.parent.span_id]
        names.append(span.name)
    return names


@pytest.mark.parametrize("backend", ["inline", "process"])
def test_each_simulated_round_is_a_trace_with_a_span_per_clientapp_call(backend: str) -> None:
    # Arrange
    exporter = InMemorySpanExporter()
    tracing = Tracing.to_exporter(exporter)

    # Act
    run_simulation(
        apps.fedavg_server,
        apps.noisy,
        3,
        backend=backend,
        num_workers=1,
        run_config={"seed": 7, "num-rounds": 2},
        tracing=tracing,
    )
    tracing.shutdown()

    # Assert: one trace per round, its root the round's span
    spans = exporter.get_finished_spans()
    by_id = {span.context.span_id: span for span in spans}
    roots = sorted((s for s in spans if s.parent is None), key=lambda s: s.name)
    assert [s.name for s in roots] == ["round 1", "round 2"]
    assert len({s.context.trace_id for s in spans}) == 2
    for root in roots:
        in_round = [s for s in spans if s.context.trace_id == root.context.trace_id]
        calls = [s for s in in_round if s.name.startswith("clientapp")]
        kinds = collections.Counter(s.name for s in calls)
        # every node trains; half of them (fraction_evaluate=0.5, at least 2) evaluate
        assert kinds == {"clientapp train": 3, "clientapp evaluate": 2}
        assert sorted(s.attributes["corolla.node_id"] for s in calls if "train" in s.name) == [
            1,
            2,
            3,
        ]
        for call in calls:
            assert _parent_chain(call, by_id) == [f"send {call.name.split()[1]}", root.name]
            assert root.start_time <= call.start_time <= call.end_time <= root.end_time
