"""``corolla node``: run a node daemon connected to a link until interrupted;
``corolla node keys``: print the node's public key, for the link's admin to register.

The node says what it does on standard error (its INFO log lines: registration, runs,
messages, ClientApp errors). It retries a connection that drops for as long as it
runs, and ends with an error (exit status 2) when its first connection fails because
of its settings: a CA that did not sign the link's certificate, an address where no
Fleet service answers.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from ..core import ConfigError
from ..execution import start_forkserver
from ..project import parse_overrides
from ..runtime import Node
from ..runtime.node import DEFAULT_MAX_MESSAGE_S, DEFAULT_RUN_PROCESSES
from ..transport import parse_address
from ..trust import NodeKey, NodePolicy
from ..tuning import return_freed_buffers
from ._run import corolla_home

__all__ = ["add_node_parser", "keys_command", "node_command"]


def add_node_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "node",
        help="run a node that trains for a link",
        description="Connect to a link and run the ClientApp of every message it sends.",
    )
    parser.add_argument(
        "--link", metavar="HOST:PORT", help="the link's Fleet API address (required)"
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
    parser.add_argument(
        "--certificate",
        type=Path,
        metavar="FILE",
        help="the node's client certificate, for a link that requires one (mutual TLS)",
    )
    parser.add_argument("--key", type=Path, metavar="FILE", help="the private key of --certificate")
    parser.add_argument(
        "--max-message-seconds",
        type=float,
        default=DEFAULT_MAX_MESSAGE_S,
        metavar="SECONDS",
        help="the longest a ClientApp call may take, whatever the message's TTL; a call "
        "that overruns it is killed and answered with an error (default: %(default)g)",
    )
    parser.add_argument(
        "--max-run-processes",
        type=int,
        default=DEFAULT_RUN_PROCESSES,
        metavar="N",
        help="runs whose ClientApp processes the node keeps at once; another run's "
        "message stops the least recently used (default: %(default)s)",
    )
    parser.add_argument(
        "--policy",
        type=Path,
        metavar="FILE",
        help="the data owner's policy, a TOML file: which apps this node runs, how much a "
        "run may ask of it, what its error replies tell (see docs/security.md)",
    )
    parser.add_argument(
        "--metrics-address",
        metavar="HOST:PORT",
        help="serve the node's Prometheus metrics at http://HOST:PORT/metrics; beyond "
        "loopback only with --insecure (default: none)",
    )
    parser.set_defaults(handler=node_command)
    actions = parser.add_subparsers(title="other actions", metavar="ACTION")
    keys = actions.add_parser(
        "keys",
        help="print the node's public key (made now if the node has none yet)",
        description="Print the node's public key, as the link's admin registers it. The "
        "key pair is made on the node's first start, or now if it has none yet.",
    )
    keys.add_argument("--state", type=Path, help="state directory (default: $COROLLA_HOME/node)")
    keys.set_defaults(handler=keys_command)


def keys_command(args: argparse.Namespace, console: Console) -> int:
    state = args.state or corolla_home() / "node"
    key, made = NodeKey.load_or_create(state)
    if made:  # on standard error: the key alone goes to standard output, for scripts
        print(f"made the node's key pair in {state}", file=sys.stderr)
    print(key.public_text)
    return 0


def node_command(args: argparse.Namespace, console: Console) -> int:
    if args.link is None:
        raise ConfigError("corolla node needs --link HOST:PORT, the link's Fleet API address")
    address = str(parse_address(args.link, what="--link", example_port=9092))
    policy = None if args.policy is None else NodePolicy.load(args.policy)
    metrics_address = None
    if args.metrics_address is not None:
        metrics = parse_address(
            args.metrics_address, what="--metrics-address", listen=True, example_port=9101
        )
        metrics_address = str(metrics)
    return_freed_buffers()
    # Each run's ClientApp process forks from it; it imports the CLI, which this script
    # imports and multiprocessing runs again in each process it starts.
    start_forkserver(preload=["corolla.cli"])
    log = logging.getLogger("corolla.runtime.node")
    if log.getEffectiveLevel() > logging.INFO:  # unless --verbose asked for more
        log.setLevel(logging.INFO)
    node = Node(
        address,
        args.state or corolla_home() / "node",
        node_config=parse_overrides(args.node_config),
        attributes=parse_overrides(args.attributes),
        root_certificates=args.root_certificates,
        certificate=args.certificate,
        private_key=args.key,
        insecure=args.insecure,
        max_message_s=args.max_message_seconds,
        max_run_processes=args.max_run_processes,
        policy=policy,
        metrics_address=metrics_address,
    )

    def terminate(signum: int, frame: object) -> None:
        node.stop()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        with node:
            metrics_url = f", metrics at {node.metrics_url}" if node.metrics_url else ""
            console.print(
                f"corolla node: connecting to {address}{metrics_url}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
            while not node.wait(1.0):
                pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    if node.error is not None:  # its first connection failed for a setting
        raise node.error
    return 0
