"""The spans of a ServerApp's rounds, made by its grid: :class:`RoundTraces`.

Each round is a trace of its own: its root span, ``round N``, runs from the strategy's
``round.start`` event to its ``round.end`` (or ``run.stop``). Under it:

- ``send <type>``: the ServerApp sending a batch of messages; each message carries the
  span's trace context, so what handles it (the link, a node, its ClientApp) is its
  descendant;
- ``clientapp <type>``: in a simulation, each ClientApp call, timed where it ran;
- ``reply <type>``: each reply the ServerApp receives, the child of the span that sent
  it (a node's, passed on by the link), so the reply's way back closes the trace.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from corolla.core import Event, Message

from ._tracing import Tracing

if TYPE_CHECKING:
    from opentelemetry.trace import Span

__all__ = ["RoundTraces"]

#: The events that end a round's trace.
_ROUND_ENDS = frozenset({"round.end", "run.stop"})


class RoundTraces:
    """The spans of the rounds of run ``run_id``; no-ops when ``tracing`` is off."""

    def __init__(self, tracing: Tracing, run_id: int) -> None:
        self._tracing = tracing
        self._run_id = run_id
        self._round: Span | None = None
        self._number: int | None = None

    @property
    def on(self) -> bool:
        return self._tracing.on

    def observe(self, event: Event) -> None:
        """Begin or end a round's trace on the strategy's events."""
        if not self._tracing.on or event.round is None:
            return
        if event.kind == "round.start":
            self.close()
            attributes = {"corolla.run_id": self._run_id, "corolla.round": event.round}
            self._round = self._tracing.start(f"round {event.round}", attributes=attributes)
            self._number = event.round
        elif event.kind in _ROUND_ENDS and event.round == self._number:
            self.close()

    def sending(self, messages: Sequence[Message]) -> list[Message]:
        """``messages``, carrying the trace context of a ``send`` span under the round."""
        if not self._tracing.on or not messages:
            return list(messages)
        kind = messages[0].metadata.message_type
        attributes = {"corolla.run_id": self._run_id, "corolla.messages": len(messages)}
        with self._tracing.span(f"send {kind}", self._round, attributes=attributes) as span:
            traceparent = self._tracing.traceparent(span)
        return [m.with_metadata(traceparent=traceparent) for m in messages]

    def replied(self, reply: Message) -> None:
        """A span for ``reply``, received: the child of the span that sent it."""
        if not self._tracing.on:
            return
        metadata = reply.metadata
        parent = metadata.traceparent or self._round
        attributes = {"corolla.run_id": self._run_id, "corolla.node_id": metadata.src_node_id}
        error = str(reply.error) if reply.has_error() else ""
        span = self._tracing.start(f"reply {metadata.message_type}", parent, attributes=attributes)
        self._tracing.end(span, error=error)

    def ran(self, message: Message, start_ns: int, end_ns: int, error: str = "") -> None:
        """A ``clientapp`` span for ``message``'s ClientApp call, timed where it ran."""
        if not self._tracing.on:
            return
        metadata = message.metadata
        attributes = {"corolla.run_id": self._run_id, "corolla.node_id": metadata.dst_node_id}
        span = self._tracing.start(
            f"clientapp {metadata.message_type}",
            metadata.traceparent or self._round,
            attributes=attributes,
            start_ns=start_ns,
        )
        self._tracing.end(span, end_ns=end_ns, error=error)

    def close(self) -> None:
        """End the round's trace, if one is open."""
        span, self._round, self._number = self._round, None, None
        self._tracing.end(span)
