"""Test doubles for the server interfaces: an in-memory Grid and a summing Aggregator."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

from corolla.core import AggregationError, Event, Message, MetricRecord, RecordDict
from corolla.server import Grid

#: How a node answers a message: zero replies (lost), one, or more (a transport retrying).
Responder = Callable[[Message], Sequence[Message]]


def echo(message: Message) -> list[Message]:
    """Reply with the request's own content."""
    return [Message(message.content, reply_to=message)]


class MemoryGrid(Grid):
    """A Grid whose nodes answer synchronously with ``respond``.

    ``joining`` node ids become available one per call of :meth:`node_ids`, to exercise
    waiting for nodes.
    """

    def __init__(
        self,
        nodes: Iterable[int] = (1, 2, 3),
        respond: Responder = echo,
        *,
        run_id: int = 4,
        joining: Iterable[int] = (),
    ) -> None:
        self._nodes = sorted(nodes)
        self._joining = list(joining)
        self._respond = respond
        self._run_id = run_id
        self._outbox: dict[str, Message] = {}
        self._counter = 0
        self.sent: list[Message] = []
        self.timeouts: list[float | None] = []
        self.events: list[Event] = []

    @property
    def run_id(self) -> int:
        return self._run_id

    def node_ids(self) -> list[int]:
        if self._joining:
            self._nodes = sorted([*self._nodes, self._joining.pop(0)])
        return list(self._nodes)

    def send(self, messages: Iterable[Message]) -> list[str]:
        ids = []
        for message in messages:
            self._counter += 1
            stamped = message.with_metadata(run_id=self._run_id, message_id=f"msg-{self._counter}")
            self._outbox[stamped.metadata.message_id] = stamped
            self.sent.append(stamped)
            ids.append(stamped.metadata.message_id)
        return ids

    def receive(
        self, message_ids: Iterable[str], timeout: float | None = None
    ) -> Iterator[Message]:
        self.timeouts.append(timeout)
        for message_id in list(message_ids):
            message = self._outbox.pop(message_id)
            yield from self._respond(message)

    def emit(self, event: Event) -> None:
        self.events.append(event)


class Sum:
    """An aggregator summing the ``x`` metric of replies; negative ``x`` is rejected."""

    def __init__(self) -> None:
        self.total = 0
        self.nodes: list[int] = []

    @property
    def count(self) -> int:
        return len(self.nodes)

    def empty(self) -> Sum:
        return Sum()

    def add(self, content: RecordDict, node_id: int) -> None:
        metrics = content.get("m")
        if not isinstance(metrics, MetricRecord) or "x" not in metrics:
            raise AggregationError("reply has no metric 'x'")
        if metrics["x"] < 0:  # type: ignore[operator]
            raise AggregationError("x must be >= 0")
        self.total += int(metrics["x"])  # type: ignore[call-overload]
        self.nodes.append(node_id)

    def merge(self, other: Sum) -> None:
        self.total += other.total
        self.nodes += other.nodes
