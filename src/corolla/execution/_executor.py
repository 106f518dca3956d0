"""The executor contract: how a simulation backend runs batches of ClientApp calls.

A :class:`Task` is a block of calls (message + node context), optionally with an empty
aggregator to fold the successful replies into. An executor runs tasks and yields a
:class:`TaskResult` for each, in any order. Backends (inline, process, and later Ray)
differ only in where the calls run; blocks and the order partial aggregates are merged
in are fixed by the grid, so every backend produces the same bits.
"""

from __future__ import annotations

import abc
import dataclasses
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from ..client import run_client_app
from ..core import Context, Message, RecordDict, UserConfigValue
from ..server import Aggregator, fold

__all__ = ["Call", "Executor", "InlineExecutor", "Task", "TaskResult", "execute_task"]

ClientCallable = Callable[[Message, Context], Message]


@dataclasses.dataclass
class Call:
    """One ClientApp call: a message to a node, and that node's context."""

    message: Message
    node_id: int
    node_config: Mapping[str, UserConfigValue]
    state: RecordDict


@dataclasses.dataclass
class Task:
    """A block of calls; with an aggregator, successful replies are folded into it."""

    index: int
    calls: list[Call]
    aggregator: Aggregator | None = None


@dataclasses.dataclass
class TaskResult:
    """What running a task gave.

    ``replies`` holds every reply when the task had no aggregator, and only the error
    replies when it had one. ``states`` holds the node states that changed.
    ``timings`` holds, for each call whose message carries a trace context (tracing is
    on), its position in the task, when it began and ended (``time.time_ns()``), and its
    error reply's text ("" for none).
    """

    index: int
    aggregator: Aggregator | None
    replies: list[Message]
    states: dict[int, RecordDict]
    num_calls: int = 0
    timings: list[tuple[int, int, int, str]] = dataclasses.field(default_factory=list)


def execute_task(
    app: ClientCallable, task: Task, run_id: int, run_config: Mapping[str, UserConfigValue]
) -> TaskResult:
    """Run a task's calls in order in this process; never raises for a ClientApp error."""
    replies: list[Message] = []
    states: dict[int, RecordDict] = {}
    timings: list[tuple[int, int, int, str]] = []
    for position, call in enumerate(task.calls):
        context = Context(run_id, call.node_id, call.node_config, run_config, call.state)
        traced = bool(call.message.metadata.traceparent)
        started = time.time_ns() if traced else 0
        reply = run_client_app(app, call.message, context)
        if traced:
            error = str(reply.error) if reply.has_error() else ""
            timings.append((position, started, time.time_ns(), error))
        if context.state is not call.state:
            states[call.node_id] = context.state
        unfolded = reply if task.aggregator is None else fold(task.aggregator, reply)
        if unfolded is not None:
            replies.append(unfolded)
        # A folded reply goes before the next call, so the memory of its arrays serves the
        # next reply's instead of memory the process has not touched yet.
        del reply, context
    return TaskResult(task.index, task.aggregator, replies, states, len(task.calls), timings)


class Executor(abc.ABC):
    """Runs tasks of ClientApp calls. Use as a context manager, or start() and close()."""

    @abc.abstractmethod
    def start(self) -> None:
        """Get ready to run tasks (start workers, load the app).

        Raises
        ------
        AppLoadError
            If the ClientApp cannot be loaded.
        """

    @abc.abstractmethod
    def run(self, tasks: Sequence[Task], timeout: float | None = None) -> Iterator[TaskResult]:
        """Run ``tasks``, yielding each result as it completes (in any order).

        A task whose calls cannot complete (worker died, timeout) yields a result whose
        replies are error messages for each of its calls.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Stop and join everything :meth:`start` started."""

    @property
    def num_workers(self) -> int:
        return 1

    def __enter__(self) -> Executor:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class InlineExecutor(Executor):
    """Runs every call in the calling process, one after another: the debugging backend."""

    def __init__(
        self,
        client_app: ClientCallable,
        run_id: int = 0,
        run_config: Mapping[str, UserConfigValue] | None = None,
    ) -> None:
        self._app = client_app
        self._run_id = run_id
        self._run_config = dict(run_config or {})

    def start(self) -> None:
        pass

    def run(self, tasks: Sequence[Task], timeout: float | None = None) -> Iterator[TaskResult]:
        for task in tasks:
            yield execute_task(self._app, task, self._run_id, self._run_config)

    def close(self) -> None:
        pass
