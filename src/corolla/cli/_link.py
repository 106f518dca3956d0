"""``corolla link``: run the coordinator of a deployment until interrupted."""

from __future__ import annotations

import argparse
import contextlib
import math
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from ..core import ConfigError
from ..runtime import DEFAULT_CONTROL_ADDRESS, DEFAULT_FLEET_ADDRESS, Link, LinkLimits
from ..runtime.link import has_admin
from ..transport import parse_address
from ..trust import DEFAULT_TOKEN_LIFETIME_S, LinkPolicy, TrustStore
from ..tuning import quiet_garbage_collector
from ._run import corolla_home

if TYPE_CHECKING:
    from ..dashboard import Dashboard

__all__ = ["add_link_parser", "link_command"]


def add_link_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "link",
        help="run the coordinator of a deployment",
        description="Serve the Fleet API to nodes and the Control API to users, until stopped.",
    )
    parser.add_argument("--state", type=Path, help="state directory (default: $COROLLA_HOME/link)")
    parser.add_argument(
        "--fleet-address",
        default=DEFAULT_FLEET_ADDRESS,
        metavar="HOST:PORT",
        help=f"where nodes connect (default {DEFAULT_FLEET_ADDRESS}; port 0: any free port)",
    )
    parser.add_argument(
        "--control-address",
        default=DEFAULT_CONTROL_ADDRESS,
        metavar="HOST:PORT",
        help=f"where users connect (default {DEFAULT_CONTROL_ADDRESS})",
    )
    parser.add_argument(
        "--metrics-address",
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http(s)://HOST:PORT/metrics (default: none)",
    )
    security = parser.add_mutually_exclusive_group()
    security.add_argument(
        "--certificates", type=Path, help="directory from `corolla certs` (serve TLS)"
    )
    security.add_argument("--insecure", action="store_true", help="no TLS, even off loopback")
    parser.add_argument(
        "--require-node-certificates",
        action="store_true",
        help="admit on the Fleet API only nodes presenting a client certificate signed by "
        "the CA of --certificates (mutual TLS)",
    )
    parser.add_argument(
        "--dashboard-address",
        metavar="HOST:PORT",
        help="serve the web dashboard at http(s)://HOST:PORT/ (default: none; needs the "
        "dashboard extra)",
    )
    parser.add_argument(
        "--heartbeat-interval", type=float, default=30.0, help="seconds between node heartbeats"
    )
    parser.add_argument(
        "--auth",
        action="store_true",
        help="admit only registered node keys, and Control callers logged in to an account "
        "(create the first admin with `corolla accounts init` first)",
    )
    parser.add_argument(
        "--federation",
        default="default",
        metavar="NAME",
        help="the federation this link serves; its tokens are refused by other federations' "
        "links (default: default)",
    )
    parser.add_argument(
        "--token-lifetime",
        type=float,
        default=DEFAULT_TOKEN_LIFETIME_S,
        metavar="SECONDS",
        help=f"how long a `corolla login` token is valid (default {DEFAULT_TOKEN_LIFETIME_S:g})",
    )
    parser.add_argument(
        "--policy",
        type=Path,
        metavar="FILE",
        help="TOML file saying which nodes may join and which apps may run (see "
        "docs/security.md; default: every node and app)",
    )
    parser.set_defaults(handler=link_command)


def _listen_address(text: str, flag: str, example_port: int) -> str:
    return str(parse_address(text, what=flag, listen=True, example_port=example_port))


def _heartbeat_interval(seconds: float) -> float:
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(
            f"--heartbeat-interval must be a number of seconds above 0, got {seconds}"
        )
    return seconds


def _token_lifetime(seconds: float) -> float:
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(f"--token-lifetime must be a number of seconds above 0, got {seconds}")
    return seconds


def _dashboard(link: Link, args: argparse.Namespace) -> Dashboard | None:
    """The link's dashboard (checked, not started), if ``--dashboard-address`` asks for
    one."""
    if args.dashboard_address is None:
        return None
    from ..dashboard import Dashboard

    return Dashboard(
        link, args.dashboard_address, certificates=args.certificates, insecure=args.insecure
    )


def _serve_dashboard(
    dashboard: Dashboard | None, auth: bool, console: Console
) -> contextlib.AbstractContextManager[object]:
    """``dashboard`` started, and its address printed; nothing if it is None."""
    if dashboard is None:
        return contextlib.nullcontext()
    dashboard.start()
    open_to_all = "" if auth else " (no accounts: open to whoever reaches it)"
    console.print(
        f"corolla link: dashboard {dashboard.url}{open_to_all}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    return dashboard


def link_command(args: argparse.Namespace, console: Console) -> int:
    state = args.state or corolla_home() / "link"
    if not args.federation.strip():
        raise ConfigError("--federation needs a name")
    token_lifetime = _token_lifetime(args.token_lifetime)
    if args.auth and not has_admin(state):
        raise ConfigError(
            f"--auth needs an admin account, and {state / TrustStore.FILE} has none: create "
            f"the first one on this machine with `corolla accounts init --state {state} NAME`, "
            "then start the link again"
        )
    fleet = _listen_address(args.fleet_address, "--fleet-address", 9092)
    control = _listen_address(args.control_address, "--control-address", 9093)
    metrics_address = None
    if args.metrics_address is not None:
        metrics_address = _listen_address(args.metrics_address, "--metrics-address", 9100)
    policy = None if args.policy is None else LinkPolicy.load(args.policy)
    link = Link(
        state,
        fleet_address=fleet,
        control_address=control,
        certificates=args.certificates,
        insecure=args.insecure,
        metrics_address=metrics_address,
        node_certificates=args.require_node_certificates,
        limits=LinkLimits(heartbeat_interval=_heartbeat_interval(args.heartbeat_interval)),
        auth=args.auth,
        federation=args.federation,
        token_lifetime=token_lifetime,
        policy=policy,
    )

    dashboard = _dashboard(link, args)  # its address is checked before the link starts

    def terminate(signum: int, frame: object) -> None:
        link.stop()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        with link:
            quiet_garbage_collector()
            metrics = f", metrics {link.metrics_url}" if link.metrics_url else ""
            auth = f", accounts required (federation {args.federation})" if args.auth else ""
            console.print(
                f"corolla link: fleet {link.fleet_address}, control {link.control_address}"
                f"{metrics}{auth}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
            with _serve_dashboard(dashboard, args.auth, console):
                while not link.wait(1.0):
                    pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0
