"""``corolla link``: run the coordinator of a deployment until interrupted."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path
from typing import Any

from rich.console import Console

from ..runtime import DEFAULT_CONTROL_ADDRESS, DEFAULT_FLEET_ADDRESS, Link, LinkLimits
from ..tuning import quiet_garbage_collector
from ._run import corolla_home

__all__ = ["add_link_parser", "link_command"]


def add_link_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "link",
        help="run the coordinator of a deployment",
        description="Serve the Fleet API to nodes and the Control API to users, until stopped.",
    )
    parser.add_argument("--state", type=Path, help="state directory (default: $COROLLA_HOME/link)")
    parser.add_argument(
        "--fleet-address", default=DEFAULT_FLEET_ADDRESS, help="where nodes connect (HOST:PORT)"
    )
    parser.add_argument(
        "--control-address", default=DEFAULT_CONTROL_ADDRESS, help="where users connect"
    )
    parser.add_argument(
        "--metrics-address",
        help="serve Prometheus metrics at http(s)://HOST:PORT/metrics (default: none)",
    )
    security = parser.add_mutually_exclusive_group()
    security.add_argument(
        "--certificates", type=Path, help="directory from `corolla certs` (serve TLS)"
    )
    security.add_argument("--insecure", action="store_true", help="no TLS, even off loopback")
    parser.add_argument(
        "--heartbeat-interval", type=float, default=30.0, help="seconds between node heartbeats"
    )
    parser.set_defaults(handler=link_command)


def link_command(args: argparse.Namespace, console: Console) -> int:
    link = Link(
        args.state or corolla_home() / "link",
        fleet_address=args.fleet_address,
        control_address=args.control_address,
        certificates=args.certificates,
        insecure=args.insecure,
        metrics_address=args.metrics_address,
        limits=LinkLimits(heartbeat_interval=args.heartbeat_interval),
    )

    def terminate(signum: int, frame: object) -> None:
        link.stop()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        with link:
            quiet_garbage_collector()
            metrics = f", metrics {link.metrics_url}" if link.metrics_url else ""
            console.print(
                f"corolla link: fleet {link.fleet_address}, control {link.control_address}"
                f"{metrics}",
                highlight=False,
            )
            while not link.wait(1.0):
                pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0
