"""The ``corolla`` command."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.text import Text

from .. import __version__
from ..core import CorollaError, ErrorCode
from ._accounts import add_accounts_parsers
from ._attach import add_attach_parsers
from ._audit import add_audit_parser
from ._certs import add_certs_parser
from ._control import add_control_parsers
from ._dashboard import add_dashboard_parser
from ._html_report import add_report_parser
from ._keys import add_keys_parser
from ._link import add_link_parser
from ._log import add_log_parser
from ._new import add_new_parser
from ._node import add_node_parser
from ._run import add_run_parser

__all__ = ["exit_code", "main"]

#: Exit statuses: 2 for what the user can fix in the command or app, 1 for the rest.
_USAGE_CODES = {ErrorCode.CONFIG, ErrorCode.APP_LOAD, ErrorCode.MISSING_EXTRA, ErrorCode.RECORD}


def exit_code(error: CorollaError) -> int:
    """The process exit status for an error."""
    return 2 if error.code in _USAGE_CODES else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="corolla", description="Corolla: federated learning, from simulation to deployment."
    )
    parser.add_argument("--version", action="version", version=f"corolla {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    add_new_parser(commands)
    add_run_parser(commands)
    add_report_parser(commands)
    add_link_parser(commands)
    add_node_parser(commands)
    add_certs_parser(commands)
    add_keys_parser(commands)
    add_control_parsers(commands)
    add_log_parser(commands)
    add_attach_parsers(commands)
    add_audit_parser(commands)
    add_accounts_parsers(commands)
    add_dashboard_parser(commands)
    return parser


def print_error(message: str) -> None:
    """``error: message`` on stderr, the message as is: an error naming
    ``[tool.corolla.app]`` must not lose it to rich's markup."""
    line = Text("error: ", style="red")
    line.append(message)
    Console(stderr=True).print(line, highlight=False, soft_wrap=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    console = Console()
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args, console))
    except CorollaError as exc:
        print_error(str(exc))
        return exit_code(exc)
    except BrokenPipeError:
        # The reader went away (`corolla log RUN --json | head`): stop quietly, and keep
        # Python from failing again as it flushes stdout on exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:  # a file or directory the command was given cannot be used
        print_error(str(exc))
        return 1
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted", markup=False)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
