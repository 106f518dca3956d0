"""``corolla ls``, ``corolla log``, ``corolla stop``, ``corolla nodes``: a link's Control API."""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["add_control_parsers"]

DEFAULT_CONTROL = "127.0.0.1:9093"


def _connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--link",
        default=DEFAULT_CONTROL,
        help=f"the link's Control API (default {DEFAULT_CONTROL})",
    )
    parser.add_argument("--root-certificates", type=Path, help="CA certificate of the link")
    parser.add_argument("--insecure", action="store_true", help="no TLS (loopback only)")


def add_control_parsers(commands: Any) -> None:
    ls = commands.add_parser("ls", help="list the runs of a link")
    _connection_options(ls)
    ls.set_defaults(handler=ls_command)

    log = commands.add_parser("log", help="show the events and logs of a run")
    log.add_argument("run_id", type=int)
    log.add_argument("--follow", "-f", action="store_true", help="keep printing until it ends")
    _connection_options(log)
    log.set_defaults(handler=log_command)

    stop = commands.add_parser("stop", help="stop a run")
    stop.add_argument("run_id", type=int)
    _connection_options(stop)
    stop.set_defaults(handler=stop_command)

    nodes = commands.add_parser("nodes", help="list the nodes of a link")
    _connection_options(nodes)
    nodes.set_defaults(handler=nodes_command)


def _client(args: argparse.Namespace) -> Any:
    from ..runtime import ControlClient

    return ControlClient(
        args.link, root_certificates=args.root_certificates, insecure=args.insecure
    )


def _time(seconds: float) -> str:
    if not seconds:
        return ""
    return datetime.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S")


def _status(name: str, prefix: str) -> str:
    return name.removeprefix(prefix).lower()


def ls_command(args: argparse.Namespace, console: Console) -> int:
    from ..transport import run_pb2

    with _client(args) as client:
        runs = client.list_runs()
    table = Table(title=f"Runs on {args.link}")
    table.add_column("run id", no_wrap=True)
    for column in ("app", "status", "created", "finished", "reason"):
        table.add_column(column)
    for run in sorted(runs, key=lambda r: r.created_at):
        table.add_row(
            str(run.run_id),
            run.app_name,
            _status(run_pb2.RunStatus.Name(run.status), "RUN_STATUS_"),
            _time(run.created_at),
            _time(run.finished_at),
            run.status_reason.splitlines()[0] if run.status_reason else "",
        )
    console.print(table)
    return 0


def log_command(args: argparse.Namespace, console: Console) -> int:
    with _client(args) as client:
        client.get_run(args.run_id)  # an unknown run fails here, with its error
        for _, event in client.events(args.run_id, follow=args.follow):
            stamp = datetime.datetime.fromtimestamp(event.time).strftime("%H:%M:%S")
            if event.kind == "log":
                console.print(f"{stamp} {event.data.get('line', '')}", highlight=False)
                continue
            where = "" if event.round is None else f" round {event.round}"
            where += "" if event.node_id is None else f" node {event.node_id}"
            data = {k: v for k, v in event.data.items() if k not in ("arrays", "history")}
            detail = json.dumps(data, default=str) if data else ""
            console.print(f"{stamp} {event.kind}{where} {detail}", highlight=False)
    return 0


def stop_command(args: argparse.Namespace, console: Console) -> int:
    from ..transport import run_pb2

    with _client(args) as client:
        run = client.stop_run(args.run_id, "stopped with corolla stop")
    status = _status(run_pb2.RunStatus.Name(run.status), "RUN_STATUS_")
    console.print(f"run {run.run_id}: {status}", highlight=False)
    return 0


def nodes_command(args: argparse.Namespace, console: Console) -> int:
    from ..transport import control_pb2, user_config_from_proto

    with _client(args) as client:
        nodes = client.list_nodes()
    table = Table(title=f"Nodes of {args.link}")
    table.add_column("node id", no_wrap=True)
    for column in ("status", "attributes", "node config", "last heartbeat"):
        table.add_column(column)
    for node in sorted(nodes, key=lambda n: n.node_id):
        table.add_row(
            str(node.node_id),
            _status(control_pb2.NodeStatus.Name(node.status), "NODE_STATUS_"),
            ", ".join(f"{k}={v}" for k, v in user_config_from_proto(node.attributes).items()),
            ", ".join(f"{k}={v}" for k, v in user_config_from_proto(node.node_config).items()),
            _time(node.last_heartbeat_at),
        )
    console.print(table)
    return 0
