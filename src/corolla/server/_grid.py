"""Grid: how a ServerApp reaches nodes, whatever runs them.

One interface, two implementations: an in-memory grid for simulation and a gRPC grid for
deployment. A ServerApp only ever talks to this interface. Besides sending and receiving,
a grid is the directory of its nodes that selection policies read (attributes, when each
was last heard from); a grid that knows nothing of its nodes keeps the defaults.
"""

from __future__ import annotations

import abc
import dataclasses
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Generic, TypeVar

from ..core import (
    AggregationError,
    Error,
    ErrorCode,
    Event,
    Message,
    NotEnoughNodesError,
    UserConfigValue,
    discard_event,
)
from ._aggregator import Aggregator
from ._checkpoints import CheckpointStore
from ._result import RunResult

__all__ = ["Grid", "Reduction", "fold", "fold_reply"]

A = TypeVar("A", bound=Aggregator)


@dataclasses.dataclass
class Reduction(Generic[A]):
    """What :meth:`Grid.send_and_reduce` returns.

    Attributes
    ----------
    aggregator
        The aggregator with every successful reply folded in.
    errors
        Error replies (a ClientApp raised, a reply was rejected, a node was lost).
    missing
        Destination node ids whose replies did not arrive before the timeout.
    """

    aggregator: A
    errors: list[Message] = dataclasses.field(default_factory=list)
    missing: list[int] = dataclasses.field(default_factory=list)

    @property
    def num_replies(self) -> int:
        return self.aggregator.count

    @property
    def num_failures(self) -> int:
        return len(self.errors) + len(self.missing)


class Grid(abc.ABC):
    """The nodes of a run, seen from the ServerApp."""

    @property
    @abc.abstractmethod
    def run_id(self) -> int:
        """The run this grid serves."""

    @abc.abstractmethod
    def node_ids(self) -> list[int]:
        """Ids of the nodes currently available, in :func:`node_order`: by node config,
        then by id, so that a strategy sampling positions in this list picks a deployed
        node where it picks its simulated twin (the node with the same node config)."""

    @abc.abstractmethod
    def send(self, messages: Iterable[Message]) -> list[str]:
        """Send messages to their destination nodes; return their message ids."""

    @abc.abstractmethod
    def receive(
        self, message_ids: Iterable[str], timeout: float | None = None
    ) -> Iterator[Message]:
        """Yield replies to ``message_ids`` as they arrive, until all arrived or ``timeout``."""

    def node_attributes(self, node_id: int) -> Mapping[str, UserConfigValue]:
        """The attributes node ``node_id`` advertised (tags, hardware, data size); empty
        for a node the grid knows nothing of, and for every node by default."""
        return {}

    def node_last_seen(self, node_id: int) -> float | None:
        """When node ``node_id`` was last heard from (``time.time()`` seconds); None when
        unknown, and for every node by default."""
        return None

    def emit(self, event: Event) -> None:
        """Report an event of the run (progress, metrics); the default discards it."""
        discard_event(event)

    @property
    def checkpoints(self) -> CheckpointStore | None:
        """Where this run's checkpoints are kept, so a ServerApp restarted after a crash
        resumes from its last one; None (the default) where nothing is kept (a simulation
        has no crash to resume from)."""
        return None

    def report_result(self, result: RunResult) -> None:
        """Hand over the run's result (final arrays, history) to whoever started the run:
        :func:`~corolla.simulation.run_simulation` returns it, a link keeps it for
        ``corolla run`` and ``corolla pull``. ``Strategy.start`` reports its result.

        The default emits a ``run.result`` event naming the arrays and the rounds.
        """
        arrays = [] if result.arrays is None else list(result.arrays)
        rounds = 0 if result.history is None else len(result.history.rounds)
        self.emit(Event("run.result", self.run_id, data={"arrays": arrays, "rounds": rounds}))

    def wait_for_nodes(self, min_nodes: int, timeout: float | None = None) -> list[int]:
        """Wait until at least ``min_nodes`` nodes are available and return their ids.

        Raises
        ------
        NotEnoughNodesError
            If fewer nodes are available when ``timeout`` expires.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            ids = self.node_ids()
            if len(ids) >= min_nodes:
                return ids
            if deadline is not None and time.monotonic() >= deadline:
                raise NotEnoughNodesError(
                    f"{len(ids)} nodes available after {timeout} s, at least {min_nodes} needed"
                )
            time.sleep(0.05)

    def send_and_receive(
        self, messages: Iterable[Message], timeout: float | None = None
    ) -> list[Message]:
        """Send messages and collect the replies that arrive before ``timeout``."""
        return list(self.receive(self.send(messages), timeout))

    def send_and_reduce(
        self, messages: Iterable[Message], aggregator: A, timeout: float | None = None
    ) -> Reduction[A]:
        """Send messages and fold each successful reply into ``aggregator`` as it arrives.

        Server memory stays that of one aggregate however many nodes reply. A reply the
        aggregator rejects becomes an entry of :attr:`Reduction.errors`. Only the first
        reply to each message counts: a duplicate (a transport retrying) or a reply to a
        message not sent here is ignored, so no update is folded twice.
        """
        sent = list(messages)
        ids = self.send(sent)
        destinations = {
            message_id: message.metadata.dst_node_id
            for message_id, message in zip(ids, sent, strict=True)
        }
        reduction: Reduction[A] = Reduction(aggregator)
        for reply in self.receive(ids, timeout):
            if destinations.pop(reply.metadata.reply_to_message_id, None) is not None:
                fold_reply(reduction, reply)
            # Let go of the reply before waiting for the next one: its arrays can be the
            # size of the model, and a runtime may free them once nothing holds them.
            del reply
        reduction.missing = sorted(destinations.values())
        return reduction


def fold(aggregator: Aggregator, reply: Message) -> Message | None:
    """Fold one reply's content into ``aggregator``; return the error message that stands
    for the reply instead when it is not folded (an error reply, or a reply the
    aggregator rejects, which leaves it unchanged). Every grid and executor folds
    replies with this."""
    if reply.has_error():
        return reply
    try:
        aggregator.add(reply.content, reply.metadata.src_node_id)
    except AggregationError as exc:
        return rejected_reply(reply, exc)
    return None


def fold_reply(reduction: Reduction[A], reply: Message) -> None:
    """Fold one reply into a reduction: content into the aggregator, errors aside."""
    error = fold(reduction.aggregator, reply)
    if error is not None:
        reduction.errors.append(error)


def rejected_reply(reply: Message, exc: AggregationError) -> Message:
    """The error message that stands for a reply the aggregator rejected."""
    error = Error(
        code=int(ErrorCode.INVALID_REPLY),
        reason=f"reply from node {reply.metadata.src_node_id} rejected: {exc}",
    )
    return Message(error=error, metadata=reply.metadata)
