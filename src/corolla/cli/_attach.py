"""``corolla attach RUN``: follow a run on a link again; ``corolla pull RUN``: download
the outputs of a run that ended. Both write what ``corolla run --link`` writes."""

from __future__ import annotations

import argparse
import contextlib
import shlex
from pathlib import Path
from typing import Any

from rich.console import Console

from ..core import ConfigError, discard_event
from ..runtime import ControlClient
from ..transport import run_pb2, user_config_from_proto
from ._connection import Connection, add_connection_options, resolve_connection
from ._describe import gist
from ._follow import RunFollower, follow_to_outputs, guard_detach, run_status
from ._output import check_output
from ._report import report, write_outputs
from ._run import add_output_options, corolla_home
from ._tracking import add_tracking_options, start_tracking

__all__ = ["add_attach_parsers"]


def add_attach_parsers(commands: Any) -> None:
    attach = commands.add_parser(
        "attach",
        help="follow a run on a link and write its outputs",
        description=(
            "Show the progress of a run submitted before (from its start), and write its "
            "outputs when it ends, as `corolla run --link` does."
        ),
    )
    attach.add_argument("run_id", type=int)
    add_output_options(attach)
    attach.add_argument("--quiet", action="store_true", help="no progress output")
    add_tracking_options(attach)
    add_connection_options(attach)
    attach.set_defaults(handler=attach_command)

    pull = commands.add_parser(
        "pull",
        help="download the outputs of a run that ended",
        description=(
            "Write history.json, final.npz, metrics.png, run.json and report.html of an ended run."
        ),
    )
    pull.add_argument("run_id", type=int)
    add_output_options(pull)
    add_connection_options(pull)
    pull.set_defaults(handler=pull_command)


def _output(args: argparse.Namespace, run: run_pb2.Run) -> Path:
    output: Path = args.output or corolla_home() / "runs" / f"{run.app_name}-run{run.run_id}"
    check_output(output, force=args.force)
    return output


def _run_info(connection: Connection, run: run_pb2.Run) -> dict[str, Any]:
    return {
        "app": run.app_name,
        "link": str(connection.address),
        "run_id": run.run_id,
        "run_config": user_config_from_proto(run.run_config),
    }


def attach_command(args: argparse.Namespace, console: Console) -> int:
    connection = resolve_connection(args)
    with connection.client() as client:
        run = client.get_run(args.run_id)
        output = _output(args, run)
        if not args.quiet:
            console.print(
                f"run {run.run_id} ({run.app_name}) on the link at {connection.address}: "
                f"{run_status(run)}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )

        info = _run_info(connection, run)
        tracker = start_tracking(
            args,
            run.app_name,
            info["run_config"],
            output,
            {"link": info["link"], "run_id": run.run_id},
        )

        def follow() -> None:
            follow_to_outputs(
                client,
                run.run_id,
                output,
                console,
                run_info=info,
                title=f"run {run.run_id} ({run.app_name})",
                quiet=args.quiet,
                tracker=tracker,
            )

        with tracker or contextlib.nullcontext():
            return guard_detach(follow, run.run_id, connection, args.output)


def _pull(
    client: ControlClient, connection: Connection, run: run_pb2.Run, output: Path, console: Console
) -> int:
    follower = RunFollower(client, run.run_id, discard_event)
    follower.follow(follow=False)
    history = follower.history()
    info = {**_run_info(connection, run), "status": run_status(run)}
    written = write_outputs(
        output, history, follower.result.arrays, info, f"run {run.run_id} ({run.app_name})"
    )
    report(console, history, written, None)
    if run.status != run_pb2.RUN_STATUS_FINISHED:
        reason = gist(run.status_reason) or "no reason given"
        console.print(
            f"run {run.run_id} {run_status(run)} ({reason}): the files hold what it left",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        return 1
    return 0


def pull_command(args: argparse.Namespace, console: Console) -> int:
    connection = resolve_connection(args)
    with connection.client() as client:
        run = client.get_run(args.run_id)
        if run.status in (run_pb2.RUN_STATUS_PENDING, run_pb2.RUN_STATUS_RUNNING):
            follow = shlex.join(["corolla", "attach", str(run.run_id), *connection.flags()])
            raise ConfigError(
                f"run {run.run_id} is {run_status(run)}: its outputs come when it ends; "
                f"follow it with `{follow}`"
            )
        return _pull(client, connection, run, _output(args, run), console)
