"""``corolla keys create FILE``: make a key that signs app bundles; ``corolla keys show
FILE``: print its public key, for the policies that trust it (``trusted-signers``).

``corolla run APP --link ... --signing-key FILE`` signs the app's bundle with it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

from ..trust import SigningKey

__all__ = ["add_keys_parser"]


def add_keys_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "keys",
        help="make or show a key that signs app bundles",
        description="Keys that sign app bundles (`corolla run --signing-key FILE`); a link "
        "or node whose policy lists the public key in [apps] trusted-signers runs the "
        "bundles it signed.",
    )
    parser.set_defaults(handler=lambda args, console: _usage(parser))
    actions = parser.add_subparsers(title="actions", metavar="ACTION")
    create = actions.add_parser(
        "create",
        help="write a new private key to FILE and print its public key",
        description="Write a new Ed25519 private key to FILE, readable by its owner only "
        "(an existing FILE is never overwritten), and print its public key.",
    )
    create.add_argument("file", type=Path, metavar="FILE")
    create.set_defaults(handler=create_command)
    show = actions.add_parser(
        "show",
        help="print the public key of the private key in FILE",
        description="Print the public key of the private key in FILE, as a policy's "
        "[apps] trusted-signers lists it.",
    )
    show.add_argument("file", type=Path, metavar="FILE")
    show.set_defaults(handler=show_command)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def create_command(args: argparse.Namespace, console: Console) -> int:
    key = SigningKey.create(args.file)
    print(key.public_text)
    return 0


def show_command(args: argparse.Namespace, console: Console) -> int:
    print(SigningKey.load(args.file).public_text)
    return 0
