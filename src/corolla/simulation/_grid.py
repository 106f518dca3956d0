"""SimulationGrid: the in-memory Grid, whose nodes are virtual and run on an executor."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

from ..core import (
    ConfigError,
    Error,
    ErrorCode,
    Event,
    EventSink,
    Message,
    Metadata,
    NotEnoughNodesError,
    RecordDict,
    UserConfigValue,
    discard_event,
    new_message_id,
)
from ..execution import Call, Executor, Task, TaskResult
from ..server import Aggregator, Grid, Reduction, RunResult, node_order
from ..telemetry import RoundTraces, Tracing

__all__ = ["SimulationGrid", "default_node_config"]

A = TypeVar("A", bound=Aggregator)

#: Upper bound on the blocks one batch of messages is cut into. Block counts depend only on
#: the batch (its length and the size of the arrays it carries), never on the number of
#: workers, so the fold tree, and hence every bit of the result, is the same for every
#: backend and worker count.
MAX_BLOCKS = 64

#: How many bytes of model the partial aggregates of one batch may add up to, counting each
#: partial at the size of the arrays the batch's messages carry. Each block's partial is
#: about as large as the model (twice, for float32 arrays summed in float64), it is copied
#: into shared memory and the root merges the partials one after another, so with a large
#: model a few large blocks cost less than many small ones.
BLOCK_BYTES_BUDGET = 256 << 20

#: Blocks a batch is cut into however large its model (when it has that many messages), so
#: that two workers share even a batch of a very large model.
MIN_BLOCKS = 2

_EMPTY_STATE = RecordDict()


def default_node_config(partition_id: int, num_partitions: int) -> dict[str, UserConfigValue]:
    """The node config of a virtual node: its data partition."""
    return {"partition-id": partition_id, "num-partitions": num_partitions}


def block_limit(content_bytes: int) -> int:
    """The most blocks a batch whose messages carry ``content_bytes`` of arrays is cut into."""
    if content_bytes <= 0:
        return MAX_BLOCKS
    return min(MAX_BLOCKS, max(MIN_BLOCKS, BLOCK_BYTES_BUDGET // content_bytes))


def split_blocks(n: int, max_blocks: int = MAX_BLOCKS) -> list[range]:
    """Cut ``range(n)`` into at most ``max_blocks`` contiguous blocks of near-equal size."""
    k = min(n, max_blocks)
    if k == 0:
        return []
    base, extra = divmod(n, k)
    blocks, start = [], 0
    for i in range(k):
        stop = start + base + (1 if i < extra else 0)
        blocks.append(range(start, stop))
        start = stop
    return blocks


class SimulationGrid(Grid):
    """A Grid over ``num_nodes`` virtual nodes with ids ``1..num_nodes``.

    Node ``i`` gets node config ``{"partition-id": i - 1, "num-partitions": num_nodes}``
    (or what ``node_config`` returns) and keeps its context state across rounds.

    As a node directory for selection policies (:meth:`node_attributes`,
    :meth:`node_last_seen`), a node's attributes are what
    ``node_attributes(partition_id, num_nodes)`` returns (none by default), and it was last
    seen when it last answered a message, or, before that, when the grid was made (virtual
    nodes are connected from the start). A call that timed out or whose worker died does
    not count as an answer.

    With ``tracing`` on, each round is a trace (see :class:`~corolla.telemetry.RoundTraces`)
    with a span per ClientApp call, timed in the worker that ran it.

    Raises
    ------
    ConfigError
        If ``num_nodes`` < 1.
    """

    def __init__(
        self,
        executor: Executor,
        num_nodes: int,
        *,
        run_id: int = 1,
        events: EventSink | None = None,
        node_config: Callable[[int, int], Mapping[str, UserConfigValue]] = default_node_config,
        node_attributes: Callable[[int, int], Mapping[str, UserConfigValue]] | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        if num_nodes < 1:
            raise ConfigError(f"a simulation needs at least one node, got {num_nodes}")
        self._node_attributes = node_attributes
        self._connected_at = time.time()
        self._last_seen: dict[int, float] = {}
        self._executor = executor
        self._num_nodes = num_nodes
        self._run_id = run_id
        self._events = events or discard_event
        self._node_config = node_config
        self._states: dict[int, RecordDict] = {}
        self._order: list[int] | None = None
        #: What the ServerApp reported with :meth:`report_result`, once it has.
        self.result = RunResult()
        self._pending: dict[str, Message] = {}
        # Message ids: a random prefix per grid and a counter, unique like a fresh uuid each
        # but a fraction of the cost with a thousand messages a round.
        self._id_prefix = new_message_id()[:20]
        self._id_counter = itertools.count()
        self._traces = RoundTraces(tracing or Tracing.off(), run_id)

    @property
    def run_id(self) -> int:
        return self._run_id

    def node_ids(self) -> list[int]:
        """Ids ``1..num_nodes`` in :func:`~corolla.server.node_order` of their node configs
        (partition order with the default configs)."""
        if self._order is None:
            ids = range(1, self._num_nodes + 1)
            if self._node_config is default_node_config:
                self._order = list(ids)  # the default configs sort as their ids
            else:
                configs = {i: self._node_config(i - 1, self._num_nodes) for i in ids}
                self._order = node_order(configs)
        return list(self._order)

    def wait_for_nodes(self, min_nodes: int, timeout: float | None = None) -> list[int]:
        """The virtual nodes; a simulation never gains nodes, so too few fail at once.

        Raises
        ------
        NotEnoughNodesError
            If the simulation has fewer than ``min_nodes`` nodes.
        """
        if self._num_nodes < min_nodes:
            raise NotEnoughNodesError(
                f"the strategy needs at least {min_nodes} nodes; this simulation has "
                f"{self._num_nodes} (use more nodes or lower the strategy's minimum)"
            )
        return self.node_ids()

    def emit(self, event: Event) -> None:
        self._traces.observe(event)
        self._events(event)

    def report_result(self, result: RunResult) -> None:
        """Keep the run's result as :attr:`result` (``run_simulation`` returns it)."""
        self.result = result
        super().report_result(result)

    def node_attributes(self, node_id: int) -> Mapping[str, UserConfigValue]:
        """The attributes of node ``node_id`` (empty for unknown ids or without attributes)."""
        if self._node_attributes is None or not 1 <= node_id <= self._num_nodes:
            return {}
        return self._node_attributes(node_id - 1, self._num_nodes)

    def node_last_seen(self, node_id: int) -> float | None:
        """When node ``node_id`` last answered (``time.time()``); None for unknown ids."""
        if not 1 <= node_id <= self._num_nodes:
            return None
        return self._last_seen.get(node_id, self._connected_at)

    def state_of(self, node_id: int) -> RecordDict:
        """The context state node ``node_id`` keeps (empty until it sets one)."""
        return self._states.get(node_id, _EMPTY_STATE)

    def _new_id(self) -> str:
        return f"{self._id_prefix}{next(self._id_counter):012x}"

    def _stamp(self, message: Message) -> Message:
        """``message`` with this run's id and a fresh message id."""
        meta = message.metadata
        metadata = Metadata(
            run_id=self._run_id,
            message_id=self._new_id(),
            src_node_id=meta.src_node_id,
            dst_node_id=meta.dst_node_id,
            reply_to_message_id=meta.reply_to_message_id,
            group_id=meta.group_id,
            message_type=meta.message_type,
            ttl=meta.ttl,
            created_at=meta.created_at,
        )
        if message.has_content():
            return Message(message.content, metadata=metadata)
        return Message(error=message.error, metadata=metadata)

    def _prepare(self, messages: Iterable[Message]) -> tuple[list[Message], list[Message]]:
        """Stamp run and message ids; split into deliverable messages and error replies."""
        ready, undeliverable = [], []
        for message in messages:
            stamped = self._stamp(message)
            if not 1 <= stamped.metadata.dst_node_id <= self._num_nodes:
                error = Error(
                    int(ErrorCode.NODE_UNAVAILABLE),
                    f"no node with id {stamped.metadata.dst_node_id} in this simulation",
                )
                undeliverable.append(Message(error=error, reply_to=stamped))
            else:
                ready.append(stamped)
        return self._traces.sending(ready), undeliverable

    def _call(self, message: Message) -> Call:
        node_id = message.metadata.dst_node_id
        config = self._node_config(node_id - 1, self._num_nodes)
        return Call(message, node_id, config, self._states.get(node_id, _EMPTY_STATE))

    def _tasks(self, messages: list[Message], aggregator: Aggregator | None) -> list[Task]:
        limit = block_limit(_largest_content(messages))
        return [
            Task(
                i,
                [self._call(messages[j]) for j in block],
                aggregator.empty() if aggregator is not None else None,
            )
            for i, block in enumerate(split_blocks(len(messages), limit))
        ]

    def _absorb(self, task: Task, result: TaskResult, done: int, total: int, phase: str) -> None:
        self._states.update(result.states)
        for position, start_ns, end_ns, error in result.timings:
            self._traces.ran(task.calls[position].message, start_ns, end_ns, error)
        unanswered = {
            reply.metadata.src_node_id
            for reply in result.replies
            if reply.has_error() and reply.error.code in _NO_ANSWER
        }
        now = time.time()
        for call in task.calls:
            if call.node_id not in unanswered:
                self._last_seen[call.node_id] = now
        self._events(
            Event("progress", self._run_id, data={"done": done, "total": total, "phase": phase})
        )

    def send(self, messages: Iterable[Message]) -> list[str]:
        ready, undeliverable = self._prepare(messages)
        for message in ready:
            self._pending[message.metadata.message_id] = message
        for reply in undeliverable:
            self._pending[reply.metadata.reply_to_message_id] = reply
        return [m.metadata.message_id for m in ready] + [
            r.metadata.reply_to_message_id for r in undeliverable
        ]

    def receive(
        self, message_ids: Iterable[str], timeout: float | None = None
    ) -> Iterator[Message]:
        wanted = [self._pending.pop(i) for i in message_ids if i in self._pending]
        to_run = [m for m in wanted if not m.metadata.reply_to_message_id]
        yield from (m for m in wanted if m.metadata.reply_to_message_id)
        phase = to_run[0].metadata.message_type if to_run else ""
        done = 0
        tasks = self._tasks(to_run, None)
        for result in self._executor.run(tasks, timeout):
            done += result.num_calls
            self._absorb(tasks[result.index], result, done, len(to_run), phase)
            for reply in result.replies:
                yield reply.with_metadata(message_id=self._new_id())

    def send_and_reduce(
        self, messages: Iterable[Message], aggregator: A, timeout: float | None = None
    ) -> Reduction[A]:
        """Run the messages and fold replies inside the workers, merging in block order."""
        ready, undeliverable = self._prepare(messages)
        reduction: Reduction[A] = Reduction(aggregator, errors=list(undeliverable))
        phase = ready[0].metadata.message_type if ready else ""
        partials: dict[int, Any] = {}
        next_block = 0
        done = 0
        tasks = self._tasks(ready, aggregator)
        for result in self._executor.run(tasks, timeout):
            done += result.num_calls
            self._absorb(tasks[result.index], result, done, len(ready), phase)
            reduction.errors.extend(result.replies)
            partials[result.index] = result.aggregator
            # Partials may view the executor's shared memory: hold none of them longer than
            # needed, so it can reuse the memory for the next ones.
            del result
            while next_block in partials:
                partial = partials.pop(next_block)
                if partial is not None:
                    aggregator.merge(partial)
                del partial
                next_block += 1
        reduction.errors.sort(key=lambda m: m.metadata.src_node_id)
        return reduction


# Error replies that mean the node never answered (the call ran out of time or its worker
# died), as opposed to a ClientApp that answered with an error.
_NO_ANSWER = frozenset({int(ErrorCode.TIMEOUT), int(ErrorCode.WORKER_CRASHED)})


def _largest_content(messages: list[Message]) -> int:
    """Array bytes of the largest content among ``messages`` (shared contents counted once)."""
    seen: set[int] = set()
    largest = 0
    for message in messages:
        if not message.has_content() or id(message.content) in seen:
            continue
        seen.add(id(message.content))
        size = sum(record.nbytes for record in message.content.array_records.values())
        largest = max(largest, size)
    return largest
