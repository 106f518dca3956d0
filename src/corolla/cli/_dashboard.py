"""``corolla dashboard``: the web dashboard over the runs ``corolla run`` wrote here."""

from __future__ import annotations

import argparse
import contextlib
import threading
import webbrowser
from pathlib import Path
from typing import Any

from rich.console import Console

from ._run import corolla_home

__all__ = ["add_dashboard_parser", "dashboard_command"]

#: Where ``corolla dashboard`` serves its pages unless told otherwise.
DEFAULT_ADDRESS = "127.0.0.1:8050"


def add_dashboard_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "dashboard",
        help="browse the runs simulated on this machine in a web dashboard",
        description=(
            "Serve the web dashboard over the output directories of `corolla run` (the "
            "newest 1,000 runs in --runs), until interrupted (Ctrl-C). A link serves its "
            "own dashboard: `corolla link --dashboard-address HOST:PORT`."
        ),
    )
    parser.add_argument(
        "--runs",
        type=Path,
        metavar="DIR",
        help="the directory holding runs, one per subdirectory "
        "(default: $COROLLA_HOME/runs, ~/.corolla/runs)",
    )
    parser.add_argument(
        "--address",
        default=DEFAULT_ADDRESS,
        metavar="HOST:PORT",
        help=f"where to serve the pages (default {DEFAULT_ADDRESS}; port 0: any free port)",
    )
    parser.add_argument("--open", action="store_true", help="open the pages in a web browser")
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="allow an address beyond loopback (the dashboard has no accounts)",
    )
    parser.set_defaults(handler=dashboard_command)


def dashboard_command(args: argparse.Namespace, console: Console) -> int:
    from ..dashboard import LocalDashboard

    runs = args.runs or corolla_home() / "runs"
    dashboard = LocalDashboard(runs, args.address, insecure=args.insecure)
    with dashboard:
        console.print(
            f"corolla dashboard: {dashboard.url} (runs in {runs}); Ctrl-C stops it",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        if args.open:
            webbrowser.open(dashboard.url)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0
