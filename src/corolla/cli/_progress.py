"""Live progress of a run, driven by the run's events."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from ..core import Event

__all__ = ["RunProgress"]

_SHOWN = ("train-loss", "loss", "accuracy", "privacy-epsilon")


def _metric_text(summary: dict[str, Any]) -> str:
    parts = []
    for phase in ("train", "evaluate", "server"):
        for name, value in summary.get(phase, {}).items():
            if name in _SHOWN and isinstance(value, int | float):
                parts.append(f"{phase} {name} {value:.4g}")
    return " · ".join(parts)


class RunProgress:
    """Shows round, nodes done and the latest metrics; prints each distinct error once,
    the ServerApp's output as it comes (``log`` events of a run on a link), and how many
    nodes a run still waits for.

    On a terminal it draws live bars; otherwise it prints one line per round. Text from
    the run (metric names, output lines, error reasons) is printed as is, never read as
    rich markup.
    """

    def __init__(self, console: Console, *, quiet: bool = False) -> None:
        self.console = console
        self.quiet = quiet
        self.live = console.is_terminal and not quiet
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._rounds: Any = None
        self._nodes: Any = None
        self._num_rounds = 0
        self._errors: dict[str, int] = {}
        self._started = time.perf_counter()
        self.first_round_at: float | None = None

    def __enter__(self) -> RunProgress:
        if self.live:
            self._progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live:
            self._progress.stop()
        if self._errors:
            total = sum(self._errors.values())
            self.console.print(
                f"[yellow]{total} error repl{'y' if total == 1 else 'ies'} "
                f"({len(self._errors)} distinct) during the run[/yellow]"
            )

    def _say(self, text: str | Text) -> None:
        """Print a line above the live bars (or as is, off a terminal)."""
        console = self._progress.console if self.live else self.console
        console.print(text, markup=False, highlight=False, soft_wrap=True)

    def __call__(self, event: Event) -> None:
        handler = getattr(self, "_on_" + event.kind.replace(".", "_"), None)
        if handler is not None:
            handler(event)

    def _on_round_start(self, event: Event) -> None:
        if self.first_round_at is None:
            self.first_round_at = time.perf_counter()
        self._num_rounds = int(event.data.get("num_rounds", self._num_rounds))
        if not self.live:
            return
        if self._rounds is None:
            self._rounds = self._progress.add_task("rounds", total=self._num_rounds)
            self._nodes = self._progress.add_task("nodes", total=1)
        self._progress.update(self._rounds, description=f"round {event.round}/{self._num_rounds}")

    def _on_progress(self, event: Event) -> None:
        if not self.live or self._nodes is None:
            return
        self._progress.update(
            self._nodes,
            completed=event.data["done"],
            total=max(event.data["total"], 1),
            description=f"{event.data['phase'] or 'nodes'} nodes",
        )

    def _on_round_end(self, event: Event) -> None:
        text = _metric_text(dict(event.data))
        if self.live:
            if self._rounds is not None and event.round:
                self._progress.update(self._rounds, completed=event.round)
            self._say(f"round {event.round}: {text}")
        elif not self.quiet:
            self._say(
                f"round {event.round}/{self._num_rounds or '?'}"
                f" ({time.perf_counter() - self._started:.1f} s): {text}"
            )

    def _on_run_stop(self, event: Event) -> None:
        self._say(f"run stopped before round {event.round}: {event.data.get('reason', '')}")

    def _on_reply_error(self, event: Event) -> None:
        reason = str(event.data.get("reason", ""))
        head = reason.splitlines()[0] if reason else "unknown error"
        key = head.split(": ", 1)[-1]
        seen = self._errors.get(key, 0)
        self._errors[key] = seen + 1
        if seen == 0:
            self._say(
                Text.assemble(
                    (
                        f"error reply from node {event.node_id} in round {event.round} "
                        f"({event.data.get('phase')}):",
                        "red",
                    ),
                    "\n" + reason.rstrip(),
                )
            )

    def _on_reply_missing(self, event: Event) -> None:
        self._errors["missing reply"] = self._errors.get("missing reply", 0) + 1

    def _on_log(self, event: Event) -> None:
        if not self.quiet:
            self._say(Text(str(event.data.get("line", "")), style="dim"))

    def _on_nodes_waiting(self, event: Event) -> None:
        if not self.quiet:
            self._say(
                f"waiting for nodes: {event.data.get('connected', 0)} of "
                f"{event.data.get('needed', '?')} connected"
            )

    def _on_nodes_ready(self, event: Event) -> None:
        if not self.quiet:
            self._say(f"{event.data.get('nodes', '?')} nodes connected; the run goes on")
