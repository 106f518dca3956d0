"""``corolla node``: run a node daemon connected to a link until interrupted."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path
from typing import Any

from rich.console import Console

from ..project import parse_overrides
from ..runtime import Node
from ..transport import parse_address
from ..tuning import return_freed_buffers
from ._run import corolla_home

__all__ = ["add_node_parser", "node_command"]


def add_node_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "node",
        help="run a node that trains for a link",
        description="Connect to a link and run the ClientApp of every message it sends.",
    )
    parser.add_argument(
        "--link", required=True, metavar="HOST:PORT", help="the link's Fleet API address"
    )
    parser.add_argument(
        "--node-config",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="the node's settings, given to the ClientApp (values read as TOML)",
    )
    parser.add_argument(
        "--attributes",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="properties advertised for node selection",
    )
    parser.add_argument("--state", type=Path, help="state directory (default: $COROLLA_HOME/node)")
    security = parser.add_mutually_exclusive_group()
    security.add_argument(
        "--root-certificates", type=Path, help="CA file to verify the link's certificate"
    )
    security.add_argument("--insecure", action="store_true", help="no TLS, even off loopback")
    parser.set_defaults(handler=node_command)


def node_command(args: argparse.Namespace, console: Console) -> int:
    address = str(parse_address(args.link, what="--link", example_port=9092))
    return_freed_buffers()
    node = Node(
        address,
        args.state or corolla_home() / "node",
        node_config=parse_overrides(args.node_config),
        attributes=parse_overrides(args.attributes),
        root_certificates=args.root_certificates,
        insecure=args.insecure,
    )

    def terminate(signum: int, frame: object) -> None:
        node.stop()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        with node:
            console.print(
                f"corolla node: connecting to {address}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
            while not node.wait(1.0):
                pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0
