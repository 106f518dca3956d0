"""``corolla certs``: a development CA and certificates for a link and its nodes."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

__all__ = ["add_certs_parser"]


def add_certs_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "certs",
        help="write development TLS certificates",
        description=(
            "Write a development certificate authority (ca.pem, ca.key), a link certificate "
            "(link.pem, link.key) and a node certificate (node.pem, node.key) into DIR. "
            "For production, use certificates from your own CA."
        ),
    )
    parser.add_argument("directory", type=Path, help="where to write the files")
    parser.add_argument(
        "--hostname",
        action="append",
        default=[],
        help="a name or IP address nodes use to reach the link (repeatable; loopback is "
        "always included)",
    )
    parser.add_argument("--days", type=int, default=365, help="validity (default 365)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing files")
    parser.set_defaults(handler=certs_command)


def certs_command(args: argparse.Namespace, console: Console) -> int:
    from ..transport import generate_certificates

    files = generate_certificates(
        args.directory, hostnames=args.hostname, days=args.days, overwrite=args.overwrite
    )
    console.print(
        f"wrote certificates to {files.directory}:", markup=False, highlight=False, soft_wrap=True
    )
    for name in ("ca.pem", "link.pem", "link.key", "node.pem", "node.key"):
        console.print(f"  {files.directory / name}", markup=False, highlight=False, soft_wrap=True)
    console.print(
        "link:  corolla link --certificates DIR ...\n"
        "nodes: corolla node --root-certificates DIR/ca.pem ... (copy ca.pem to each node)\n"
        "users: corolla run/ls/log/... --root-certificates DIR/ca.pem ...",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    return 0
