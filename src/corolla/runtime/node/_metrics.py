"""The node's Prometheus metrics: ``corolla node --metrics-address HOST:PORT``.

Served over HTTP at ``/metrics`` (see ``corolla.runtime._prometheus``), off by default:

- ``corolla_node_messages_total{type, outcome}``: messages served, by message type
  (``train``, ``evaluate``, ``query``...) and outcome (``ok``, ``error``, or ``dropped``:
  the run ended, the node stopped or the connection was lost before the reply);
- ``corolla_node_errors_total{code}``: error replies, by error code name
  (``EXECUTION``, ``TIMEOUT``, ``PERMISSION_DENIED``...);
- ``corolla_node_clientapp_seconds{type}``: a histogram of the seconds each message took
  to serve, from its arrival to its reply (its arrays' download and the ClientApp call);
- ``corolla_node_received_bytes_total`` and ``corolla_node_sent_bytes_total``: the bytes
  of the messages received and the replies sent, arrays included.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram
from prometheus_client.registry import CollectorRegistry

from corolla.core import ErrorCode

__all__ = ["NodeMeter"]

#: Buckets of the ClientApp seconds: from a quick evaluation to a long local training.
_SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


class NodeMeter:
    """What a node counts of the messages it serves, in a registry of its own; each
    method is quick and thread-safe."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._messages = Counter(
            "corolla_node_messages",
            "Messages the node served, by message type and outcome",
            ["type", "outcome"],
            registry=self.registry,
        )
        self._errors = Counter(
            "corolla_node_errors",
            "Error replies the node sent, by error code",
            ["code"],
            registry=self.registry,
        )
        self._seconds = Histogram(
            "corolla_node_clientapp_seconds",
            "Seconds a message took to serve (its arrays' download and the ClientApp call)",
            ["type"],
            buckets=_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self._received = Counter(
            "corolla_node_received_bytes",
            "Bytes of the messages the node received, arrays included",
            registry=self.registry,
        )
        self._sent = Counter(
            "corolla_node_sent_bytes",
            "Bytes of the replies the node sent, arrays included",
            registry=self.registry,
        )

    def served(self, message_type: str, outcome: str, seconds: float, code: int | None) -> None:
        """A message of ``message_type`` served with ``outcome`` in ``seconds``; ``code``
        is its error reply's code, if it had one."""
        self._messages.labels(message_type or "unknown", outcome).inc()
        if outcome != "dropped":
            self._seconds.labels(message_type or "unknown").observe(seconds)
        if code is not None:
            self._errors.labels(_code_name(code)).inc()

    def received(self, size: int) -> None:
        self._received.inc(size)

    def sent(self, size: int) -> None:
        self._sent.inc(size)


def _code_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:  # a code from a newer peer
        return str(code)
