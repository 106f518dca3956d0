"""``corolla run``: simulate an app on virtual nodes, or run it on a link, with progress
and a final report."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
from pathlib import Path
from typing import Any

from rich.console import Console

from ..core import ConfigError, Event
from ..project import AppConfig, merge_run_config, parse_overrides
from ..server import History
from ..simulation import run_simulation
from ..trust import SigningKey
from ._connection import add_connection_options, resolve_connection
from ._output import check_output
from ._progress import RunProgress
from ._report import report, write_outputs
from ._tracking import add_tracking_options, say_tracked, start_tracking

__all__ = ["add_run_parser", "corolla_home", "flower_config_file", "load_app", "run_command"]

#: Options that shape a simulation and mean nothing on a link (its nodes are real).
_SIMULATION_ONLY = (("nodes", "--nodes"), ("backend", "--backend"), ("workers", "--workers"))


def corolla_home() -> Path:
    """Where Corolla keeps runs by default: ``$COROLLA_HOME`` or ``~/.corolla``."""
    return Path(os.environ.get("COROLLA_HOME", Path.home() / ".corolla"))


def flower_config_file() -> Path:
    """Flower's configuration file, whose ``[superlink]`` connections a Flower app without
    ``[tool.flwr.federations]`` uses: ``$FLWR_HOME/config.toml`` or ``~/.flwr/config.toml``."""
    return Path(os.environ.get("FLWR_HOME", Path.home() / ".flwr")) / "config.toml"


def load_app(app: str) -> AppConfig:
    """The app at ``app``: a directory, or a Flower FAB unpacked under ``corolla_home()``."""
    return AppConfig.load(app, fab_dir=corolla_home() / "fabs", flower_config=flower_config_file())


def add_output_options(parser: argparse.ArgumentParser) -> None:
    """``--output DIR`` and ``--force``, as ``run``, ``attach`` and ``pull`` take them."""
    parser.add_argument(
        "--output", type=Path, help="directory for history, arrays and plots (see --force)"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace the outputs of an earlier run in --output",
    )


def add_run_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "run",
        help="run an app in simulation or on a link",
        description=(
            "Run an app's ServerApp against virtual nodes running its ClientApp, or submit "
            "it to a link (--link, --federation) and follow it."
        ),
    )
    parser.add_argument(
        "app_dir",
        help="app directory (a pyproject.toml with [tool.corolla.app] or Flower's "
        "[tool.flwr.app]), or a Flower App Bundle (app.fab)",
    )
    parser.add_argument(
        "--run-config",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help='override run config values, read as TOML ("a=1 b=2" in one argument works too)',
    )
    parser.add_argument("--nodes", type=int, help="number of virtual nodes (simulation)")
    parser.add_argument(
        "--backend", choices=["inline", "process"], help="where ClientApp calls run (simulation)"
    )
    parser.add_argument("--workers", type=int, help="worker processes (process backend)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the run (default 0)")
    add_output_options(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    add_connection_options(parser, default=None, app=False)
    parser.add_argument(
        "--signing-key",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="sign the app's bundle with the key in FILE (`corolla keys create`), for a "
        "link or nodes whose policy trusts it; may be given more than once",
    )
    add_tracking_options(parser)
    parser.set_defaults(handler=run_command)


def _positive(name: str, value: int | None) -> int | None:
    if value is not None and value < 1:
        raise ConfigError(f"{name} must be >= 1, got {value}")
    return value


def _check_options(args: argparse.Namespace, remote: bool) -> None:
    """Refuse options that mean nothing where the run goes."""
    if remote:
        where = "--link" if args.link else "--federation"
        for attribute, flag in _SIMULATION_ONLY:
            if getattr(args, attribute) is not None:
                raise ConfigError(
                    f"{flag} shapes a simulation and means nothing with {where}: the run uses "
                    "the nodes connected to the link; leave it out"
                )
    else:
        for attribute, flag in (
            ("root_certificates", "--root-certificates"),
            ("insecure", "--insecure"),
            ("signing_key", "--signing-key"),
        ):
            if getattr(args, attribute):
                raise ConfigError(
                    f"{flag} is for a run on a link: give --link HOST:PORT or --federation NAME, "
                    "or leave it out to simulate"
                )


def run_command(args: argparse.Namespace, console: Console) -> int:
    app = load_app(args.app_dir)
    # A Flower app's local-simulation federation names a simulation, not a link.
    simulated = args.federation in app.simulations and not args.link
    remote = bool(args.link or (args.federation and not simulated))
    _check_options(args, remote)
    overrides = parse_overrides(args.run_config, app.config)
    run_config = merge_run_config(app.config, {**overrides, "seed": args.seed})
    now = datetime.datetime.now()
    output = args.output or corolla_home() / "runs" / f"{app.name}-{now:%Y%m%d-%H%M%S}"
    if remote:
        signing_keys = [SigningKey.load(path) for path in args.signing_key]
        connection = resolve_connection(args, app)
        check_output(output, force=args.force)
        if not args.quiet:
            console.print(
                f"corolla run {app.name} on the link at {connection.address}, seed {args.seed}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
        from ._remote import run_on_link

        tracker = start_tracking(
            args, app, run_config, output, {"link": connection.address, "seed": args.seed}
        )
        with tracker or contextlib.nullcontext():
            # The link merges the overrides with the app's defaults itself.
            return run_on_link(
                app,
                connection,
                {**overrides, "seed": args.seed},
                output,
                console,
                quiet=args.quiet,
                signing_keys=signing_keys,
                tracker=tracker,
            )
    simulation = app.simulations[args.federation] if simulated else app.simulation
    nodes = _positive("--nodes", args.nodes) or int(simulation.get("num-nodes", 10))
    backend = args.backend or str(simulation.get("backend", "process"))
    workers = _positive("--workers", args.workers)
    if workers is None and "workers" in simulation:
        workers = _positive("workers of the app's simulation", int(simulation["workers"]))
    check_output(output, force=args.force)
    tracker = start_tracking(
        args, app, run_config, output, {"nodes": nodes, "backend": backend, "seed": args.seed}
    )
    with tracker or contextlib.nullcontext():
        if not args.quiet:
            console.print(
                f"corolla run {app.name}: {nodes} nodes, backend {backend}, seed {args.seed}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
        round_ends: list[Event] = []

        with RunProgress(console, quiet=args.quiet) as progress:

            def on_event(event: Event) -> None:
                if event.kind == "round.end":
                    round_ends.append(event)
                if tracker is not None:
                    tracker(event)
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

        history = result.history or History.from_dict(
            {"rounds": [dict(e.data) for e in round_ends]}
        )
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
        if tracker is not None:
            run_info["tracking"] = tracker.where
        title = f"{app.name}, simulated {now:%Y-%m-%d %H:%M}"
        written = write_outputs(Path(output), history, result.arrays, run_info, title)
        if tracker is not None:
            tracker.finish(history, written)
        if not args.quiet:
            report(console, history, written, result.total_s)
        say_tracked(console, tracker, quiet=args.quiet)
        return 0
