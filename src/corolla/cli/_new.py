"""``corolla new``: write an app directory that runs at once."""

from __future__ import annotations

import argparse
import keyword
import re
import shlex
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import Any

from rich.console import Console

from ..core import ConfigError

__all__ = ["FRAMEWORKS", "add_new_parser", "create_app"]

FRAMEWORKS = ("numpy", "pytorch", "sklearn")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


def add_new_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "new", help="create a new app", description="Create an app directory that runs at once."
    )
    parser.add_argument("name", help="app name (letters, digits, '-' and '_')")
    parser.add_argument("--framework", choices=FRAMEWORKS, default="numpy")
    parser.add_argument("--dir", type=Path, default=Path("."), help="parent directory")
    parser.set_defaults(handler=new_command)


def _package_name(name: str) -> str:
    package = name.replace("-", "_").lower()
    if keyword.iskeyword(package):
        package += "_app"
    return package


def _walk(node: Traversable, relative: Path) -> list[tuple[Path, Traversable]]:
    files = []
    for child in node.iterdir():
        if child.name == "__pycache__":
            continue
        if child.is_dir():
            files.extend(_walk(child, relative / child.name))
        elif child.name.endswith(".tmpl"):
            files.append((relative / child.name.removesuffix(".tmpl"), child))
    return files


def create_app(name: str, framework: str, parent: Path) -> Path:
    """Write app ``name`` for ``framework`` under ``parent``; return its directory.

    Raises
    ------
    ConfigError
        If the name is invalid, the framework unknown, or the directory already exists.
    """
    if not _NAME.match(name):
        raise ConfigError(
            f"app name {name!r} must start with a letter and hold only letters, digits, - and _"
        )
    if framework not in FRAMEWORKS:
        raise ConfigError(f"unknown framework {framework!r}; choose one of {FRAMEWORKS}")
    target = parent / name
    if target.exists():
        raise ConfigError(f"{target} already exists")
    package = _package_name(name)
    root = resources.files("corolla.cli").joinpath("templates").joinpath(framework)
    for relative, source in _walk(root, Path()):
        path = target / Path(str(relative).replace("__package__", package))
        path.parent.mkdir(parents=True, exist_ok=True)
        text = source.read_text(encoding="utf-8")
        path.write_text(text.replace("__NAME__", name).replace("__PACKAGE__", package))
    return target


def next_steps(target: Path) -> list[str]:
    """The commands to try a new app at ``target``: they run as printed from the
    directory ``corolla new`` ran in (each deployment command in a terminal of its own)."""
    app = shlex.quote(str(target))
    nodes = shlex.quote(str(target.parent / f"{target.name}-nodes"))
    return [
        "simulate it:",
        f"  corolla run {app}",
        f"  corolla run {app} --run-config num-server-rounds=3 --nodes 10",
        "deploy it on this machine, each command in a terminal of its own:",
        "  corolla link",
        *(
            f"  corolla node --link 127.0.0.1:9092 --state {nodes}/{i} "
            f"--node-config partition-id={i} num-partitions=2"
            for i in range(2)
        ),
        f"  corolla run {app} --link 127.0.0.1:9093 --run-config num-server-rounds=3",
    ]


def new_command(args: argparse.Namespace, console: Console) -> int:
    target = create_app(args.name, args.framework, args.dir)
    console.print(
        f"created {target} ({args.framework})", markup=False, highlight=False, soft_wrap=True
    )
    for line in next_steps(target):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    return 0
