"""Submitting a run to a link and following it like a simulation (``corolla run --link``)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console

from ..core import Event, ExecutionError, UserConfigValue
from ..project import AppConfig
from ..runtime import ControlClient, RunResult
from ..server import History
from ._progress import RunProgress
from ._report import print_summary, write_outputs

__all__ = ["submit_and_follow"]


def submit_and_follow(
    app: AppConfig,
    link_address: str,
    run_config: Mapping[str, UserConfigValue],
    output: Path,
    console: Console,
    *,
    quiet: bool = False,
    root_certificates: str | Path | None = None,
    insecure: bool = False,
    timeout: float | None = None,
) -> RunResult:
    """Submit ``app`` to the link's Control API, show its progress, write its outputs.

    ``run_config`` holds the overrides (``seed`` included); the link merges them with
    the app's defaults. Returns the run's final arrays and history.

    Raises
    ------
    ConfigError
        If the link rejects the run config or the app.
    ExecutionError
        If the run fails or is stopped.
    CorollaError
        If the link cannot be reached.
    """
    started = time.perf_counter()
    result = RunResult(None, None)
    round_ends: list[Event] = []
    end: Event | None = None
    with ControlClient(
        link_address, root_certificates=root_certificates, insecure=insecure
    ) as client:
        run = client.submit(app.root, run_config)
        if not quiet:
            console.print(
                f"[bold]corolla run[/bold] {app.name}: run {run.run_id} on link {link_address}",
                highlight=False,
            )
        with RunProgress(console, quiet=quiet) as progress:
            for _, event in client.events(run.run_id, follow=True, timeout=timeout):
                if event.kind == "run.result":
                    result = client.result_of(event)
                    continue
                if event.kind == "round.end":
                    round_ends.append(event)
                elif event.kind == "run.end":
                    end = event
                progress(event)
        final = client.get_run(run.run_id)
    status = str(end.data.get("status", "")) if end is not None else ""
    if status != "finished":
        reason = final.status_reason or (str(end.data.get("reason", "")) if end else "")
        raise ExecutionError(f"run {run.run_id} did not finish ({status or 'no end'}): {reason}")
    history = result.history or History.from_dict({"rounds": [dict(e.data) for e in round_ends]})
    total = time.perf_counter() - started
    run_info: dict[str, Any] = {
        "app": app.name,
        "app_dir": str(app.root),
        "link": link_address,
        "run_id": run.run_id,
        "run_config": dict(run_config),
        "total_s": round(total, 3),
    }
    written = write_outputs(Path(output), history, result.arrays, run_info)
    if not quiet:
        if history.rounds:
            print_summary(console, history)
        console.print(f"finished in {total:.1f} s; wrote:", highlight=False)
        for path in written:
            console.print(f"  {path}", highlight=False)
    return RunResult(result.arrays, history)
