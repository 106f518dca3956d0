"""Submitting a run to a link and following it like a simulation (``corolla run --link``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from ..core import UserConfigValue
from ..project import AppConfig
from ..runtime import ControlClient
from ..server import RunResult
from ..tracking import RunTracker
from ..trust import SigningKey
from ._connection import Connection
from ._follow import follow_to_outputs, guard_detach

__all__ = ["run_on_link", "submit_and_follow"]


def _run_info(
    app: AppConfig, address: str, run_id: int, run_config: Mapping[str, Any]
) -> dict[str, Any]:
    return {
        "app": app.name,
        "app_dir": str(app.root),
        "link": address,
        "run_id": run_id,
        "run_config": dict(run_config),
    }


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
    signing_keys: Sequence[SigningKey] = (),
) -> RunResult:
    """Submit ``app`` to the link's Control API, show its progress, write its outputs.

    ``run_config`` holds the overrides (``seed`` included); the link merges them with
    the app's defaults; ``signing_keys`` sign its bundle. Returns the run's final
    arrays and history.

    Raises
    ------
    ConfigError
        If the link rejects the run config or the app.
    ExecutionError
        If the run fails or is stopped.
    CorollaError
        If the link cannot be reached.
    """
    with ControlClient(
        link_address, root_certificates=root_certificates, insecure=insecure
    ) as client:
        run = client.submit(app.root, run_config, signing_keys=signing_keys)
        return follow_to_outputs(
            client,
            run.run_id,
            Path(output),
            console,
            run_info=_run_info(app, link_address, run.run_id, run_config),
            title=f"run {run.run_id} ({app.name})",
            quiet=quiet,
            timeout=timeout,
        )


def run_on_link(
    app: AppConfig,
    connection: Connection,
    run_config: Mapping[str, UserConfigValue],
    output: Path,
    console: Console,
    *,
    quiet: bool = False,
    signing_keys: Sequence[SigningKey] = (),
    tracker: RunTracker | None = None,
) -> int:
    """``corolla run --link``/``--federation``: submit (the bundle signed by
    ``signing_keys``), follow (logging each round to ``tracker``, if given), write the
    outputs; on Ctrl-C or a lost link, print how to follow the run again. Returns the
    exit status.

    Raises
    ------
    ConfigError
        If the link rejects the run config or the app.
    ExecutionError
        If the run fails or is stopped.
    CorollaError
        If the link cannot be reached.
    """
    address = str(connection.address)
    with connection.client() as client:
        run = client.submit(app.root, run_config, signing_keys=signing_keys)
        if not quiet:
            console.print(
                f"run {run.run_id} submitted to the link at {address}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )

        def follow() -> None:
            follow_to_outputs(
                client,
                run.run_id,
                output,
                console,
                run_info=_run_info(app, address, run.run_id, run_config),
                title=f"run {run.run_id} ({app.name})",
                quiet=quiet,
                tracker=tracker,
            )

        return guard_detach(follow, run.run_id, connection, output)
