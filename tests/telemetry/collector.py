"""An OTLP/gRPC trace collector on 127.0.0.1, for tests: it keeps the spans exported to it."""

from __future__ import annotations

import threading
from concurrent import futures
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


class Span:
    """What a test reads of an exported span."""

    def __init__(self, service: str, proto: Any) -> None:
        self.service = service
        self.name: str = proto.name
        self.trace_id: bytes = proto.trace_id
        self.span_id: bytes = proto.span_id
        self.parent_id: bytes = proto.parent_span_id


class OtlpCollector(trace_service_pb2_grpc.TraceServiceServicer):
    """A TraceService on a free port of 127.0.0.1 (:attr:`endpoint`), while in a ``with``."""

    def __init__(self) -> None:
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self._server)
        port = self._server.add_insecure_port("127.0.0.1:0")
        self.endpoint = f"http://127.0.0.1:{port}"
        self._spans: list[Span] = []
        self._lock = threading.Lock()

    def Export(self, request: Any, context: Any) -> Any:
        with self._lock:
            for resource_spans in request.resource_spans:
                service = next(
                    (
                        a.value.string_value
                        for a in resource_spans.resource.attributes
                        if a.key == "service.name"
                    ),
                    "",
                )
                for scope_spans in resource_spans.scope_spans:
                    self._spans.extend(Span(service, s) for s in scope_spans.spans)
        return trace_service_pb2.ExportTraceServiceResponse()

    @property
    def spans(self) -> list[Span]:
        with self._lock:
            return list(self._spans)

    def __enter__(self) -> OtlpCollector:
        self._server.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.stop(grace=None).wait(5)
