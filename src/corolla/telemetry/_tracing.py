"""Tracing with OpenTelemetry, off unless configured: :class:`Tracing`.

On when the standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) environment variable names an OTLP/gRPC collector,
and ``OTEL_SDK_DISABLED`` is not ``true``: each process (the link, a run's ServerApp, a
node, a simulation) then exports its spans there, as service ``corolla-link``,
``corolla-serverapp``, ``corolla-node`` or ``corolla-simulation`` unless
``OTEL_SERVICE_NAME`` says otherwise. The exporter's other standard variables (headers,
certificates, timeouts) apply as OpenTelemetry documents them.

Off, OpenTelemetry is not even imported, and every method returns at once. The spans of
one message cross processes: the W3C trace context of the span that sent a message
travels in its metadata (``Metadata.traceparent``), and the receiver's span is its child.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from corolla.core import MissingExtraError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span

__all__ = ["ENDPOINT_VARIABLES", "Tracing"]

#: The environment variables that name where spans go; either turns tracing on.
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")

#: A span's attributes: OpenTelemetry takes these value types.
Attributes = Mapping[str, str | int | float | bool]


class Tracing:
    """Makes and exports spans, or, built with no provider (:meth:`off`), none.

    Parameters
    ----------
    provider
        The OpenTelemetry SDK's ``TracerProvider`` whose processors export the spans;
        None for no tracing.
    """

    def __init__(self, provider: TracerProvider | None = None) -> None:
        self._provider = provider
        self._tracer = None if provider is None else provider.get_tracer("corolla")

    @classmethod
    def off(cls) -> Tracing:
        """No tracing: every method returns at once."""
        return cls()

    @classmethod
    def from_environment(cls, service: str, environ: Mapping[str, str] | None = None) -> Tracing:
        """Spans exported over OTLP/gRPC if ``environ`` (``os.environ`` by default) names
        an endpoint (see the module docstring), as service ``service``; else :meth:`off`.

        Raises
        ------
        MissingExtraError
            If an endpoint is named and OpenTelemetry is not installed.
        """
        env = os.environ if environ is None else environ
        if not any(env.get(name) for name in ENDPOINT_VARIABLES):
            return cls.off()
        if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return cls.off()
        _check_installed()
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = _provider(env.get("OTEL_SERVICE_NAME") or service)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        return cls(provider)

    @classmethod
    def to_exporter(cls, exporter: SpanExporter, service: str = "corolla") -> Tracing:
        """Each span handed to ``exporter`` as it ends (e.g. the SDK's
        ``InMemorySpanExporter``, to read them back).

        Raises
        ------
        MissingExtraError
            If OpenTelemetry is not installed.
        """
        _check_installed()
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        provider = _provider(service)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        return cls(provider)

    @property
    def on(self) -> bool:
        return self._tracer is not None

    def start(
        self,
        name: str,
        parent: str | Span | None = None,
        *,
        attributes: Attributes | None = None,
        start_ns: int | None = None,
    ) -> Span | None:
        """A span begun now (or at ``start_ns``, ``time.time_ns()``), the child of
        ``parent`` (a span, or a W3C ``traceparent``); with none, the root of a new trace.
        None when tracing is off; end it with :meth:`end`."""
        if self._tracer is None:
            return None
        from opentelemetry import context, trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        if parent is None or parent == "":
            parent_context = context.Context()  # a new trace, whatever is current
        elif isinstance(parent, str):
            parent_context = TraceContextTextMapPropagator().extract({"traceparent": parent})
        else:
            parent_context = trace.set_span_in_context(parent)
        return self._tracer.start_span(
            name, parent_context, attributes=dict(attributes or {}), start_time=start_ns
        )

    def end(self, span: Span | None, *, end_ns: int | None = None, error: str = "") -> None:
        """End ``span`` (now, or at ``end_ns``), marked failed with ``error`` if given."""
        if span is None:
            return
        if error:
            from opentelemetry.trace import Status, StatusCode

            span.set_status(Status(StatusCode.ERROR, error))
        span.end(end_time=end_ns)

    @contextlib.contextmanager
    def span(
        self, name: str, parent: str | Span | None = None, *, attributes: Attributes | None = None
    ) -> Iterator[Span | None]:
        """:meth:`start` and :meth:`end` around a block; an exception out of the block
        marks the span failed."""
        span = self.start(name, parent, attributes=attributes)
        try:
            yield span
        except BaseException as exc:
            self.end(span, error=f"{type(exc).__name__}: {exc}")
            raise
        self.end(span)

    @staticmethod
    def traceparent(span: Span | None) -> str:
        """The W3C ``traceparent`` of ``span``, for a message it sends; "" for None."""
        if span is None:
            return ""
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        carrier: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(carrier, trace.set_span_in_context(span))
        return carrier.get("traceparent", "")

    def shutdown(self) -> None:
        """Export the spans not yet exported and stop; idempotent."""
        if self._provider is not None:
            self._provider.shutdown()
            self._provider = None
            self._tracer = None

    def __enter__(self) -> Tracing:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()


def _check_installed() -> None:
    try:
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError("opentelemetry-sdk", "telemetry") from exc


def _provider(service: str) -> TracerProvider:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    return TracerProvider(resource=Resource.create({"service.name": service}))
