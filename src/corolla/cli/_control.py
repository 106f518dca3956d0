"""``corolla ls``, ``corolla stop``, ``corolla nodes``: runs and nodes of a link
(``corolla nodes keys|add|remove``: the node keys it admits, see ``_accounts``).

``ls`` and ``nodes`` print a table, or with ``--format json`` one JSON document with
stable keys (times in seconds since the Unix epoch, null when they have not happened)::

    {"link": "127.0.0.1:9093", "runs": [{"run_id": 1, "app": "...", "status": "finished",
      "created_at": ..., "started_at": ..., "finished_at": ..., "reason": "",
      "run_config": {...}}]}
    {"link": "127.0.0.1:9093", "nodes": [{"node_id": 1, "status": "online",
      "attributes": {...}, "node_config": {...}, "registered_at": ...,
      "last_heartbeat_at": ...}]}
"""

from __future__ import annotations

import argparse
import datetime
import json
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..core import ConfigError
from ..transport import control_pb2, run_pb2, user_config_from_proto
from ._accounts import node_keys_command
from ._connection import add_connection_options, resolve_connection
from ._describe import gist
from ._follow import run_status

__all__ = ["add_control_parsers", "node_record", "run_record"]


def _format_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=["table", "json"],
        default="table",
        help="a table (default) or one JSON document with stable keys",
    )


def add_control_parsers(commands: Any) -> None:
    ls = commands.add_parser("ls", help="list the runs of a link")
    _format_option(ls)
    add_connection_options(ls)
    ls.set_defaults(handler=ls_command)

    stop = commands.add_parser("stop", help="stop a run")
    stop.add_argument("run_id", type=int)
    add_connection_options(stop)
    stop.set_defaults(handler=stop_command)

    nodes = commands.add_parser(
        "nodes",
        help="list the nodes of a link, or the node keys it admits (keys, add, remove)",
        description="List the nodes of a link; `keys`, `add KEY`, `remove KEY`: the node "
        "public keys it admits with --auth (admin).",
    )
    nodes.add_argument(
        "action",
        nargs="?",
        choices=["list", "keys", "add", "remove"],
        default="list",
        help="list (default): the nodes; keys: the registered node keys; add/remove KEY",
    )
    nodes.add_argument("key", nargs="?", help="a node's public key, as `corolla node keys` prints")
    nodes.add_argument("--name", help="with add: a name to remember the node key by")
    _format_option(nodes)
    add_connection_options(nodes)
    nodes.set_defaults(handler=nodes_command)


def _epoch(seconds: float) -> float | None:
    return seconds or None


def _time(seconds: float) -> str:
    if not seconds:
        return ""
    return datetime.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S")


def run_record(run: run_pb2.Run) -> dict[str, Any]:
    """A run as ``ls --format json`` shows it."""
    return {
        "run_id": run.run_id,
        "app": run.app_name,
        "bundle_sha256": run.bundle_sha256,
        "bundle_signers": [s.public_key for s in run.bundle_signatures],
        "status": run_status(run),
        "created_at": _epoch(run.created_at),
        "started_at": _epoch(run.started_at),
        "finished_at": _epoch(run.finished_at),
        "reason": run.status_reason,
        "run_config": user_config_from_proto(run.run_config),
    }


def node_record(node: control_pb2.Node) -> dict[str, Any]:
    """A node as ``nodes --format json`` shows it."""
    return {
        "node_id": node.node_id,
        "status": control_pb2.NodeStatus.Name(node.status).removeprefix("NODE_STATUS_").lower(),
        "attributes": user_config_from_proto(node.attributes),
        "node_config": user_config_from_proto(node.node_config),
        "registered_at": _epoch(node.registered_at),
        "last_heartbeat_at": _epoch(node.last_heartbeat_at),
    }


def _print_json(console: Console, document: dict[str, Any]) -> None:
    # Not rich's print_json: the document goes out as is, for other programs to read.
    console.file.write(json.dumps(document, indent=2, default=str) + "\n")


def ls_command(args: argparse.Namespace, console: Console) -> int:
    connection = resolve_connection(args)
    with connection.client() as client:
        runs = sorted(client.list_runs(), key=lambda r: r.created_at)
    if args.format == "json":
        _print_json(
            console, {"link": str(connection.address), "runs": [run_record(r) for r in runs]}
        )
        return 0
    table = Table(title=Text(f"Runs on {connection.address}"))
    # Ids are copied into other commands: never cut, whatever the terminal's width.
    table.add_column(
        "run id", no_wrap=True, min_width=max((len(str(r.run_id)) for r in runs), default=6)
    )
    table.add_column("app")
    table.add_column("status", no_wrap=True)
    for column in ("created", "finished", "reason"):
        table.add_column(column)
    for run in runs:
        # Text, not str: what users named (apps, attributes) is not rich markup.
        table.add_row(
            str(run.run_id),
            Text(run.app_name),
            run_status(run),
            _time(run.created_at),
            _time(run.finished_at),
            Text(gist(run.status_reason)),
        )
    console.print(table)
    return 0


def stop_command(args: argparse.Namespace, console: Console) -> int:
    connection = resolve_connection(args)
    with connection.client() as client:
        run = client.stop_run(args.run_id, "stopped with corolla stop")
    console.print(
        f"run {run.run_id}: {run_status(run)}", markup=False, highlight=False, soft_wrap=True
    )
    return 0


def nodes_command(args: argparse.Namespace, console: Console) -> int:
    if args.action != "list":
        return node_keys_command(args, console)
    if args.key is not None or args.name is not None:
        raise ConfigError("corolla nodes lists the nodes: a key goes with `add` or `remove`")
    connection = resolve_connection(args)
    with connection.client() as client:
        nodes = sorted(client.list_nodes(), key=lambda n: n.node_id)
    records = [node_record(n) for n in nodes]
    if args.format == "json":
        _print_json(console, {"link": str(connection.address), "nodes": records})
        return 0
    table = Table(title=Text(f"Nodes of {connection.address}"))
    table.add_column(
        "node id", no_wrap=True, min_width=max((len(str(n.node_id)) for n in nodes), default=7)
    )
    table.add_column("status", no_wrap=True)
    for column in ("attributes", "node config", "last heartbeat"):
        table.add_column(column)
    for record in records:
        table.add_row(
            str(record["node_id"]),
            record["status"],
            Text(", ".join(f"{k}={v}" for k, v in record["attributes"].items())),
            Text(", ".join(f"{k}={v}" for k, v in record["node_config"].items())),
            _time(record["last_heartbeat_at"] or 0.0),
        )
    console.print(table)
    return 0
