"""Following a run on a link: its events shown as progress, its outputs written at the end.

``corolla run --link`` follows the run it submitted, ``corolla attach`` one submitted
before, ``corolla pull`` reads a run that ended. The run lives on the link, not in the
command: when the command is interrupted (Ctrl-C) or loses the link (the event stream
breaks, as when the link restarts), it says so and prints the commands that follow the
run again and stop it.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from ..core import Event, ExecutionError
from ..runtime import ControlClient
from ..server import History, RunResult
from ..tracking import RunTracker
from ..transport import TransportError, run_pb2
from ._connection import Connection
from ._progress import RunProgress
from ._report import report, write_outputs
from ._tracking import say_tracked

__all__ = [
    "RunFollower",
    "follow_to_outputs",
    "guard_detach",
    "run_status",
]


def run_status(run: run_pb2.Run) -> str:
    """``finished``, ``running``... of a run as the link has it."""
    return run_pb2.RunStatus.Name(run.status).removeprefix("RUN_STATUS_").lower()


class RunFollower:
    """Reads a run's events: hands them to ``progress``, keeps the round ends and the end,
    and once the run reported its result, downloads it (``ControlClient.result``)."""

    def __init__(
        self, client: ControlClient, run_id: int, progress: Callable[[Event], None]
    ) -> None:
        self._client = client
        self.run_id = run_id
        self._progress = progress
        self.round_ends: list[Event] = []
        self.end: Event | None = None
        self.result = RunResult()

    def follow(self, *, follow: bool = True, timeout: float | None = None) -> None:
        """Read the events (with ``follow``, until the run ends).

        Raises
        ------
        TransportError
            If the stream breaks, or ends before the run does (the link stopped).
        CorollaError
            If the run is unknown or its result does not download.
        """
        for _, event in self._client.events(self.run_id, follow=follow, timeout=timeout):
            if event.kind == "run.result":
                self.result = self._client.result(self.run_id) or RunResult()
                continue
            if event.kind == "round.end":
                self.round_ends.append(event)
            elif event.kind == "run.end":
                self.end = event
            self._progress(event)
        if follow and self.end is None:
            raise TransportError("the link closed the event stream before the run ended")

    @property
    def status(self) -> str:
        """How the run ended (``finished``, ``failed``, ``stopped``), or ``""``."""
        return str(self.end.data.get("status", "")) if self.end is not None else ""

    def history(self) -> History:
        """The history the run reported, or one rebuilt from its round ends."""
        if self.result.history is not None:
            return self.result.history
        return History.from_dict({"rounds": [dict(e.data) for e in self.round_ends]})


def follow_to_outputs(
    client: ControlClient,
    run_id: int,
    output: Path,
    console: Console,
    *,
    run_info: dict[str, Any],
    title: str,
    quiet: bool = False,
    timeout: float | None = None,
    tracker: RunTracker | None = None,
) -> RunResult:
    """Follow run ``run_id`` with a progress display until it ends, then write its
    outputs into ``output`` and print the summary. With ``tracker``, each round is
    logged as it ends, and the outputs at the end.

    Raises
    ------
    ExecutionError
        If the run fails or is stopped.
    TransportError
        If the link is lost on the way.
    """
    started = time.perf_counter()
    with RunProgress(console, quiet=quiet) as progress:

        def on_event(event: Event) -> None:
            if tracker is not None:
                tracker(event)
            progress(event)

        follower = RunFollower(client, run_id, on_event)
        follower.follow(timeout=timeout)
    if follower.status != "finished":
        final = client.get_run(run_id)
        reason = final.status_reason or str(
            follower.end.data.get("reason", "") if follower.end else ""
        )
        raise ExecutionError(f"run {run_id} did not finish ({follower.status}): {reason}")
    history = follower.history()
    info = {**run_info, "total_s": round(time.perf_counter() - started, 3)}
    if tracker is not None:
        info["tracking"] = tracker.where
    written = write_outputs(output, history, follower.result.arrays, info, title)
    if tracker is not None:
        tracker.finish(history, written)
    if not quiet:
        report(console, history, written, time.perf_counter() - started)
    say_tracked(console, tracker, quiet=quiet)
    return RunResult(follower.result.arrays, history)


def _commands(run_id: int, connection: Connection, output: Path | None) -> list[str]:
    attach = ["corolla", "attach", str(run_id), *connection.flags()]
    if output is not None:
        attach += ["--output", str(output)]
    stop = ["corolla", "stop", str(run_id), *connection.flags()]
    return [f"  follow it: {shlex.join(attach)}", f"  stop it:   {shlex.join(stop)}"]


def guard_detach(
    body: Callable[[], None],
    run_id: int,
    connection: Connection,
    output: Path | None,
) -> int:
    """Run ``body`` (which follows run ``run_id``); on Ctrl-C or a lost link, say the run
    goes on at the link and how to follow and stop it. Returns the exit status: 0, 130
    when interrupted, 1 when the link was lost."""
    errors = Console(stderr=True)
    try:
        body()
    except KeyboardInterrupt:
        lines = [
            f"interrupted: run {run_id} goes on at the link at {connection.address}.",
            *_commands(run_id, connection, output),
        ]
        errors.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)
        return 130
    except TransportError as exc:
        head = Text("error: ", style="red")
        head.append(
            f"lost the link at {connection.address} while following run {run_id} ({exc}); "
            "the run goes on there while the link runs, or once it is back."
        )
        errors.print(head, highlight=False, soft_wrap=True)
        commands = "\n".join(_commands(run_id, connection, output))
        errors.print(commands, markup=False, highlight=False, soft_wrap=True)
        return 1
    return 0
