"""Tracing: on only when configured, spans chained through W3C trace contexts."""

from __future__ import annotations

import sys

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from corolla.core import MissingExtraError
from corolla.telemetry import Tracing

ENDPOINT = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": ""},
        {**ENDPOINT, "OTEL_SDK_DISABLED": "true"},
    ],
)
def test_tracing_is_off_unless_an_endpoint_is_configured(environ: dict[str, str]) -> None:
    tracing = Tracing.from_environment("corolla-test", environ)

    assert not tracing.on
    assert tracing.start("nothing") is None
    with tracing.span("nothing either") as span:
        assert span is None
    assert Tracing.traceparent(span) == ""


@pytest.mark.parametrize(
    "variable", ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
)
def test_an_otlp_endpoint_turns_tracing_on(variable: str) -> None:
    with Tracing.from_environment("corolla-test", {variable: "http://127.0.0.1:4317"}) as tracing:
        assert tracing.on
    assert not tracing.on  # shut down by the block


def test_an_endpoint_without_opentelemetry_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)  # as if not installed

    with pytest.raises(MissingExtraError, match=r"corolla\[telemetry\]"):
        Tracing.from_environment("corolla-test", ENDPOINT)


def test_a_span_started_from_a_traceparent_is_its_child_in_the_same_trace() -> None:
    # Arrange
    exporter = InMemorySpanExporter()
    tracing = Tracing.to_exporter(exporter, "corolla-test")

    # Act
    with tracing.span("sender") as sender:
        traceparent = Tracing.traceparent(sender)
    with tracing.span("receiver", traceparent):
        pass
    tracing.shutdown()

    # Assert
    sent, received = exporter.get_finished_spans()
    assert received.parent is not None
    assert received.parent.span_id == sent.context.span_id
    assert received.context.trace_id == sent.context.trace_id
    assert traceparent.startswith(f"00-{sent.context.trace_id:032x}-{sent.context.span_id:016x}-")
    assert sent.parent is None  # a span with no parent starts a trace


def test_a_span_left_by_an_exception_is_marked_failed() -> None:
    exporter = InMemorySpanExporter()
    tracing = Tracing.to_exporter(exporter)

    with pytest.raises(ValueError, match="broken"), tracing.span("failing"):
        raise ValueError("broken")

    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "ValueError: broken"
