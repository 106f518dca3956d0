"""``corolla run``: simulate an app on virtual nodes, with progress and a final report."""

from __future__ import annotations

import argparse
import datetime
import os
from pathlib import Path
from typing import Any

from rich.console import Console

from ..core import ConfigError, Event
from ..project import AppConfig, merge_run_config, parse_overrides
from ..server import History
from ..simulation import run_simulation
from ._progress import RunProgress
from ._report import print_summary, write_outputs

__all__ = ["add_run_parser", "corolla_home", "run_command"]


def corolla_home() -> Path:
    """Where Corolla keeps runs by default: ``$COROLLA_HOME`` or ``~/.corolla``."""
    return Path(os.environ.get("COROLLA_HOME", Path.home() / ".corolla"))


def add_run_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "run",
        help="run an app in simulation",
        description="Run an app's ServerApp against virtual nodes running its ClientApp.",
    )
    parser.add_argument("app_dir", help="app directory (with a [tool.corolla.app] pyproject.toml)")
    parser.add_argument(
        "--run-config",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="override run config values (values are read as TOML)",
    )
    parser.add_argument("--nodes", type=int, help="number of virtual nodes")
    parser.add_argument(
        "--backend", choices=["inline", "process"], help="where ClientApp calls run"
    )
    parser.add_argument("--workers", type=int, help="worker processes (process backend)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the run (default 0)")
    parser.add_argument("--output", type=Path, help="directory for history, arrays and plots")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--federation", help="run on the federation of this name in the app's pyproject.toml"
    )
    target.add_argument("--link", help="run on the link whose Control API is at this address")
    parser.add_argument("--root-certificates", type=Path, help="CA certificate of the link")
    parser.add_argument(
        "--insecure", action="store_true", help="no TLS to the link (loopback only)"
    )
    parser.set_defaults(handler=run_command)


def _positive(name: str, value: int | None) -> int | None:
    if value is not None and value < 1:
        raise ConfigError(f"{name} must be >= 1, got {value}")
    return value


def run_command(args: argparse.Namespace, console: Console) -> int:
    app = AppConfig.load(args.app_dir)
    run_config = merge_run_config(app.config, parse_overrides(args.run_config))
    run_config["seed"] = args.seed
    nodes = _positive("--nodes", args.nodes) or int(app.simulation.get("num-nodes", 10))
    backend = args.backend or str(app.simulation.get("backend", "process"))
    workers = _positive("--workers", args.workers)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    output = args.output or corolla_home() / "runs" / f"{app.name}-{stamp}"
    if args.federation or args.link:
        return _run_remote(args, app, run_config, Path(output), console)

    console.print(
        f"[bold]corolla run[/bold] {app.name}: {nodes} nodes, backend {backend}, seed {args.seed}",
        highlight=False,
    )
    round_ends: list[Event] = []

    with RunProgress(console, quiet=args.quiet) as progress:

        def on_event(event: Event) -> None:
            if event.kind == "round.end":
                round_ends.append(event)
            progress(event)

        result = run_simulation(
            app.server_ref,
            app.client_ref,
            nodes,
            backend=backend,
            num_workers=workers,
            run_config=run_config,
            events=on_event,
        )

    history = result.history or History.from_dict({"rounds": [dict(e.data) for e in round_ends]})
    run_info = {
        "app": app.name,
        "app_dir": str(app.root),
        "nodes": nodes,
        "backend": backend,
        "workers": workers,
        "seed": args.seed,
        "run_config": run_config,
        "startup_s": round(result.startup_s, 3),
        "total_s": round(result.total_s, 3),
    }
    written = write_outputs(Path(output), history, result.arrays, run_info)
    if not args.quiet:
        if history.rounds:
            print_summary(console, history)
        console.print(f"finished in {result.total_s:.1f} s; wrote:", highlight=False)
        for path in written:
            console.print(f"  {path}", highlight=False)
    return 0


def _run_remote(
    args: argparse.Namespace,
    app: AppConfig,
    run_config: dict[str, Any],
    output: Path,
    console: Console,
) -> int:
    """Submit the run to a link (by ``--link`` or ``--federation``) and follow it."""
    from ._remote import submit_and_follow

    address, certificates, insecure = args.link, args.root_certificates, args.insecure
    if args.federation:
        federation = app.federations.get(args.federation)
        if federation is None:
            raise ConfigError(
                f"no federation {args.federation!r} in {app.root / 'pyproject.toml'}; "
                f"it defines {sorted(app.federations) or 'none'}"
            )
        if "address" not in federation:
            raise ConfigError(f"federation {args.federation!r} has no address")
        address = str(federation["address"])
        if certificates is None and "root-certificates" in federation:
            certificates = app.root / str(federation["root-certificates"])
        insecure = insecure or bool(federation.get("insecure", False))
    console.print(
        f"[bold]corolla run[/bold] {app.name} on the link at {address}, seed {args.seed}",
        highlight=False,
    )
    submit_and_follow(
        app,
        address,
        run_config,
        output,
        console,
        quiet=args.quiet,
        root_certificates=certificates,
        insecure=insecure,
    )
    return 0
