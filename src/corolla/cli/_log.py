"""``corolla log RUN``: a run's events as sentences, or as JSON lines with ``--json``."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console

from ._connection import add_connection_options, resolve_connection
from ._describe import describe, event_json

__all__ = ["add_log_parser"]


def add_log_parser(commands: Any) -> None:
    log = commands.add_parser(
        "log",
        help="show the events and the ServerApp's output of a run",
        description=(
            "Print a run's events as sentences (its ServerApp's output lines start with '|'), "
            "or with --json one JSON object per line: sequence, run_id, kind, round, "
            "node_id, time, data."
        ),
    )
    log.add_argument("run_id", type=int)
    log.add_argument("--follow", "-f", action="store_true", help="keep printing until it ends")
    log.add_argument("--json", action="store_true", help="the raw events, one JSON object a line")
    add_connection_options(log)
    log.set_defaults(handler=log_command)


def log_command(args: argparse.Namespace, console: Console) -> int:
    connection = resolve_connection(args)
    with connection.client() as client:
        client.get_run(args.run_id)  # an unknown run fails here, with its error
        for sequence, event in client.events(args.run_id, follow=args.follow):
            if args.json:
                console.file.write(event_json(sequence, event) + "\n")
                console.file.flush()
            else:
                console.print(describe(event), markup=False, highlight=False, soft_wrap=True)
    return 0
