"""Which link a command talks to: ``--link`` or ``--federation``, with TLS options.

Every command that reaches a link's Control API (``run --link``, ``ls``, ``log``,
``stop``, ``nodes``, ``attach``, ``pull``) takes the same options and resolves them
here, into a :class:`Connection` that opens the client and can write the options back
(for the commands printed to follow or stop a run).

``--federation NAME`` reads ``[tool.corolla.federations.NAME]`` from the app's
``pyproject.toml``: the app being run for ``corolla run``, otherwise the directory
``--app`` names (default: the current directory).

Every client sends the account token ``corolla login`` saved for its link
(``$COROLLA_HOME/tokens/HOST_PORT.jwt``, its owner's only), or ``$COROLLA_TOKEN`` when
that is set.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
from pathlib import Path
from typing import Any

from ..core import ConfigError
from ..project import AppConfig
from ..runtime import ControlClient
from ..transport import Address, parse_address

__all__ = [
    "DEFAULT_CONTROL",
    "TOKEN_VARIABLE",
    "Connection",
    "add_connection_options",
    "resolve_connection",
    "token_file",
]

DEFAULT_CONTROL = "127.0.0.1:9093"
#: The environment variable whose token, when set, every command sends.
TOKEN_VARIABLE = "COROLLA_TOKEN"


def token_file(address: Address) -> Path:
    """Where ``corolla login`` keeps the token for the link at ``address``."""
    from ._run import corolla_home  # _run builds on this module

    host = re.sub(r"[^A-Za-z0-9.-]", "_", address.host)
    return corolla_home() / "tokens" / f"{host}_{address.port}.jwt"


def add_connection_options(
    parser: argparse.ArgumentParser, *, default: str | None = DEFAULT_CONTROL, app: bool = True
) -> None:
    """Add ``--link``/``--federation`` (and ``--app`` where ``app``), ``--root-certificates``
    and ``--insecure`` to ``parser``; ``default`` is the link used when neither is given."""
    target = parser.add_mutually_exclusive_group()
    shown = f" (default {default})" if default else ""
    target.add_argument(
        "--link", metavar="HOST:PORT", help=f"the link's Control API address{shown}"
    )
    target.add_argument(
        "--federation",
        metavar="NAME",
        help="the link of [tool.corolla.federations.NAME] in the app's pyproject.toml",
    )
    if app:
        parser.add_argument(
            "--app",
            metavar="DIR",
            help="app directory whose pyproject.toml defines --federation (default: .)",
        )
    security = parser.add_mutually_exclusive_group()
    security.add_argument(
        "--root-certificates", type=Path, metavar="FILE", help="CA certificate of the link"
    )
    security.add_argument(
        "--insecure", action="store_true", help="no TLS to the link, even off loopback"
    )


@dataclasses.dataclass(frozen=True)
class Connection:
    """A link's Control address and how to reach it, with the options that named it."""

    address: Address
    root_certificates: Path | None = None
    insecure: bool = False
    #: What the user wrote to name it: ("--link", ...) or ("--federation", NAME, "--app", ...).
    options: tuple[str, ...] = ()

    def token(self) -> str | None:
        """The account token to send: ``$COROLLA_TOKEN``, else the one ``corolla login``
        saved for this link, else None."""
        token = os.environ.get(TOKEN_VARIABLE, "").strip()
        if token:
            return token
        try:
            return token_file(self.address).read_text("utf-8").strip() or None
        except OSError:  # not logged in (or the file cannot be read: as good as none)
            return None

    def client(self, *, token: str | None = None) -> ControlClient:
        """A Control client for the link (a context manager), sending ``token`` if given
        (``""``: none), else :meth:`token`.

        Raises
        ------
        ConfigError
            If the CA certificate cannot be read.
        """
        return ControlClient(
            str(self.address),
            root_certificates=self.root_certificates,
            insecure=self.insecure,
            token=self.token() if token is None else token,
        )

    def flags(self) -> list[str]:
        """The options that reach the same link from another command."""
        flags = list(self.options)
        if "--federation" not in flags:
            if self.root_certificates is not None:
                flags += ["--root-certificates", str(self.root_certificates)]
            if self.insecure:
                flags.append("--insecure")
        return flags


def _federation(app: AppConfig, name: str, app_option: list[str], args: Any) -> Connection:
    federation = app.federations.get(name)
    where = app.root / "pyproject.toml"
    if federation is None:
        raise ConfigError(
            f"no federation {name!r} in {where}; it defines "
            f"{sorted({*app.federations, *app.simulations}) or 'none'}"
        )
    if "address" not in federation:
        raise ConfigError(f'federation {name!r} in {where} has no address = "HOST:PORT"')
    address = parse_address(
        str(federation["address"]), what=f"the address of federation {name!r}", example_port=9093
    )
    certificates = args.root_certificates
    if certificates is None and "root-certificates" in federation:
        certificates = app.root / str(federation["root-certificates"])
    insecure = args.insecure or (certificates is None and bool(federation.get("insecure", False)))
    options = ("--federation", name, *app_option)
    if args.root_certificates is not None:
        options += ("--root-certificates", str(args.root_certificates))
    if args.insecure:
        options += ("--insecure",)
    return Connection(address, certificates, insecure, options)


def resolve_connection(
    args: argparse.Namespace, app: AppConfig | None = None, *, default: str = DEFAULT_CONTROL
) -> Connection:
    """The link ``args`` name. For ``--federation``, ``app`` is the app being run (whose
    directory is ``args.app_dir``), or None to read the app at ``--app`` (default: the
    current directory).

    Raises
    ------
    ConfigError
        If the address is malformed, the federation is unknown or has no address, or
        ``--app`` is given without ``--federation``.
    """
    app_dir = getattr(args, "app", None)
    if args.federation:
        if app is None:
            app = AppConfig.load(app_dir or ".")
        else:
            app_dir = getattr(args, "app_dir", None)
        app_option = ["--app", app_dir] if app_dir and Path(app_dir) != Path(".") else []
        return _federation(app, args.federation, app_option, args)
    if app_dir is not None:
        raise ConfigError(
            "--app names the app whose pyproject.toml defines --federation: give --federation"
        )
    text = args.link or default
    address = parse_address(text, what="--link", example_port=9093)
    options = ("--link", str(address)) if args.link else ()
    return Connection(address, args.root_certificates, args.insecure, options)
