"""``corolla accounts``, ``corolla login``, ``corolla logout``, and the node keys of
``corolla nodes``: who may use a link.

- ``corolla accounts init --state DIR NAME`` creates the first admin, on the link's
  machine, in the link's trust store (``DIR/trust.db``); it is refused once an admin
  exists. Every other change goes through a running link, as an admin.
- ``corolla login --user NAME`` exchanges a password for a token and saves it for that
  link in ``$COROLLA_HOME/tokens/`` (its owner's only); every command to the link sends
  it until it expires (``corolla logout`` deletes it).
- ``corolla accounts list|add|remove|set-role|passwd`` and ``corolla nodes
  keys|add|remove`` call the link's Accounts service.

Passwords are asked on the terminal (twice for a new one), or read from the first line
of standard input with ``--password-stdin``; they are never command-line arguments,
which other users of the machine can read.
"""

from __future__ import annotations

import argparse
import datetime
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..core import ConfigError
from ..runtime.link import bootstrap_admin, check_no_admin
from ..transport import accounts_pb2
from ..trust import LinkPolicy, Role, TrustStore, check_account_name
from ._connection import Connection, add_connection_options, resolve_connection, token_file

__all__ = ["add_accounts_parsers", "node_keys_command"]

_ROLES = [r.value for r in Role]


def _time(seconds: float) -> str:
    if not seconds:
        return ""
    return datetime.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S")


def _print(console: Console, text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _password_option(parser: argparse.ArgumentParser, what: str = "the password") -> None:
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help=f"read {what} from the first line of standard input instead of asking",
    )


def read_password(args: argparse.Namespace, prompt: str, *, new: bool) -> str:
    """A password from the first line of standard input (``--password-stdin``), or asked
    on the terminal (twice when ``new``).

    Raises
    ------
    ConfigError
        If it is empty, the two entries differ, or there is no terminal to ask on.
    """
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        if not sys.stdin.isatty():
            raise ConfigError(
                "no terminal to ask the password on: pass --password-stdin and write it to "
                "standard input"
            )
        password = getpass.getpass(f"{prompt}: ")
        if new and getpass.getpass(f"{prompt} again: ") != password:
            raise ConfigError("the two passwords differ: nothing was changed")
    if not password:
        raise ConfigError("the password is empty")
    return password


def add_accounts_parsers(commands: Any) -> None:
    """``accounts``, ``login``, ``logout`` and ``policy``."""
    accounts = commands.add_parser(
        "accounts",
        help="the accounts of a link (init, list, add, remove, set-role, passwd)",
        description="Create the first admin of a link, or manage its accounts as an admin.",
    )
    accounts.set_defaults(handler=lambda args, console: _usage(accounts))
    actions = accounts.add_subparsers(title="actions", metavar="ACTION")

    init = actions.add_parser(
        "init",
        help="create the first admin (on the link's machine)",
        description="Create the first admin account in the link's trust store "
        "(STATE/trust.db); refused once the store has an admin.",
    )
    init.add_argument("name", help="the admin's account name")
    init.add_argument(
        "--state", type=Path, help="the link's state directory (default: $COROLLA_HOME/link)"
    )
    _password_option(init)
    init.set_defaults(handler=init_command)

    listing = actions.add_parser("list", help="list the accounts (admin)")
    listing.add_argument("--format", choices=["table", "json"], default="table")
    add_connection_options(listing)
    listing.set_defaults(handler=list_command)

    add = actions.add_parser("add", help="create an account (admin)")
    add.add_argument("name")
    add.add_argument("--role", choices=_ROLES, required=True)
    _password_option(add, "its password")
    add_connection_options(add)
    add.set_defaults(handler=add_command)

    remove = actions.add_parser("remove", help="delete an account (admin)")
    remove.add_argument("name")
    add_connection_options(remove)
    remove.set_defaults(handler=remove_command)

    set_role = actions.add_parser("set-role", help="change an account's role (admin)")
    set_role.add_argument("name")
    set_role.add_argument("role", choices=_ROLES)
    add_connection_options(set_role)
    set_role.set_defaults(handler=set_role_command)

    passwd = actions.add_parser(
        "passwd",
        help="change a password: your own, or as an admin another account's",
        description="Change your own password (asks the current one first), or as an "
        "admin another account's (NAME).",
    )
    passwd.add_argument("name", nargs="?", help="the account (default: your own)")
    passwd.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the passwords from standard input: the current one first when it is "
        "asked, then the new one, one a line",
    )
    add_connection_options(passwd)
    passwd.set_defaults(handler=passwd_command)

    login = commands.add_parser(
        "login",
        help="log in to a link (saves a token for it)",
        description="Exchange an account's password for a token, saved for this link in "
        "$COROLLA_HOME/tokens/ and sent by every command to it until it expires.",
    )
    login.add_argument("--user", required=True, metavar="NAME", help="the account's name")
    _password_option(login)
    add_connection_options(login)
    login.set_defaults(handler=login_command)

    logout = commands.add_parser("logout", help="forget the token saved for a link")
    add_connection_options(logout)
    logout.set_defaults(handler=logout_command)

    policy = commands.add_parser(
        "policy",
        help="the link's policy: which nodes may join, which apps may run",
        description="Show the policy a running link enforces, or put another in force at "
        "once (admin). The link keeps it across restarts, until it is set again or the "
        "link is started with --policy FILE. See docs/security.md for what a policy holds.",
    )
    policy.set_defaults(handler=lambda args, console: _usage(policy))
    policy_actions = policy.add_subparsers(title="actions", metavar="ACTION")
    show = policy_actions.add_parser("show", help="print the policy in force, as TOML")
    add_connection_options(show)
    show.set_defaults(handler=policy_show_command)
    put = policy_actions.add_parser("set", help="put the policy of a TOML file in force (admin)")
    put.add_argument("file", type=Path, help="the policy, as `corolla link --policy` reads it")
    add_connection_options(put)
    put.set_defaults(handler=policy_set_command)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def init_command(args: argparse.Namespace, console: Console) -> int:
    from ._run import corolla_home  # _run builds on _connection, as this module does

    state: Path = args.state or corolla_home() / "link"
    name = check_account_name(args.name)
    check_no_admin(state)  # before asking for a password
    password = read_password(args, f"password for {name}", new=True)
    bootstrap_admin(state, name, password)
    store = state / TrustStore.FILE
    _print(console, f"created admin {name!r} in {store}")
    _print(console, f"next: start the link with `corolla link --auth --state {state}`, then")
    _print(console, f"      `corolla login --user {name}`")
    return 0


def login_command(args: argparse.Namespace, console: Console) -> int:
    connection = resolve_connection(args)
    name = check_account_name(args.user)
    password = read_password(args, f"password for {name}", new=False)
    login = _log_in(connection, name, password)
    _print(
        console,
        f"logged in to {connection.address} as {login.name} ({login.role}, federation "
        f"{login.federation}) until {_time(login.expires_at)}",
    )
    return 0


def _log_in(connection: Connection, name: str, password: str) -> Any:
    """Log in as ``name`` and save the token for the link's later commands; the login."""
    # A token saved earlier is not sent: logging in must not depend on it.
    with connection.client(token="") as client:
        login = client.accounts.login(name, password)
    path = token_file(connection.address)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        os.fchmod(fd, 0o600)  # a file left by an earlier login keeps no looser mode
        file.write(login.token + "\n")
    return login


def logout_command(args: argparse.Namespace, console: Console) -> int:
    connection = resolve_connection(args)
    path = token_file(connection.address)
    try:
        path.unlink()
    except FileNotFoundError:
        _print(console, f"not logged in to {connection.address}")
        return 0
    _print(console, f"logged out of {connection.address}")
    return 0


def _account_record(account: accounts_pb2.Account) -> dict[str, Any]:
    return {"name": account.name, "role": account.role, "created_at": account.created_at}


def list_command(args: argparse.Namespace, console: Console) -> int:
    connection = resolve_connection(args)
    with connection.client() as client:
        accounts = client.accounts.list_accounts()
    records = [_account_record(a) for a in accounts]
    if args.format == "json":
        document = {"link": str(connection.address), "accounts": records}
        console.file.write(json.dumps(document, indent=2) + "\n")
        return 0
    table = Table(title=Text(f"Accounts of {connection.address}"))
    for column in ("name", "role", "created"):
        table.add_column(column)
    for record in records:
        table.add_row(Text(record["name"]), record["role"], _time(record["created_at"]))
    console.print(table)
    return 0


def add_command(args: argparse.Namespace, console: Console) -> int:
    connection = resolve_connection(args)
    name = check_account_name(args.name)
    password = read_password(args, f"password for {name}", new=True)
    with connection.client() as client:
        account = client.accounts.add_account(name, args.role, password)
    _print(console, f"added {account.name} ({account.role})")
    return 0


def remove_command(args: argparse.Namespace, console: Console) -> int:
    connection = resolve_connection(args)
    with connection.client() as client:
        client.accounts.remove_account(args.name)
    _print(console, f"removed {args.name}")
    return 0


def set_role_command(args: argparse.Namespace, console: Console) -> int:
    connection = resolve_connection(args)
    with connection.client() as client:
        account = client.accounts.set_role(args.name, args.role)
    _print(console, f"{account.name} is now {account.role}")
    return 0


def passwd_command(args: argparse.Namespace, console: Console) -> int:
    connection = resolve_connection(args)
    with connection.client() as client:
        me = client.accounts.whoami()
        name = args.name or me.name
        current = ""
        if name == me.name and me.auth:
            current = read_password(args, f"current password for {name}", new=False)
        new = read_password(args, f"new password for {name}", new=True)
        client.accounts.set_password(name, new, current)
    if not me.auth:
        _print(console, f"changed the password of {name}")
    elif name == me.name:
        # The token this command used was issued before the change: void now.
        login = _log_in(connection, name, new)
        _print(
            console,
            f"changed the password of {name}; the tokens issued to it before are void, and "
            f"this login is renewed until {_time(login.expires_at)}",
        )
    else:
        _print(
            console,
            f"changed the password of {name}; the tokens issued to it before are void",
        )
    return 0


def policy_show_command(args: argparse.Namespace, console: Console) -> int:
    connection = resolve_connection(args)
    with connection.client() as client:
        policy = client.accounts.get_policy()
    _print_policy(console, policy)
    if policy.toml:
        console.file.write(policy.toml if policy.toml.endswith("\n") else policy.toml + "\n")
    return 0


def policy_set_command(args: argparse.Namespace, console: Console) -> int:
    connection = resolve_connection(args)
    try:
        text = args.file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"link policy {args.file}: cannot be read: {exc}") from None
    # Checked here first, so that a mistake is named with the file, before any call.
    LinkPolicy.loads(text, str(args.file))
    with connection.client() as client:
        policy = client.accounts.set_policy(text)
    _print(console, f"the policy of {args.file} is in force on {connection.address}")
    _print_policy(console, policy)
    return 0


def _print_policy(console: Console, policy: accounts_pb2.PolicyResponse) -> None:
    """Where the policy in force comes from, as comment lines (the TOML stays valid)."""
    if not policy.toml:
        _print(console, "# the built-in policy: every node may join, every app may run")
        return
    line = f"# {policy.source}"
    if policy.set_by and policy.source == f"set by {policy.set_by}":
        line += f" at {_time(policy.set_at)}"
    elif policy.set_by:
        line += f" (set by {policy.set_by} at {_time(policy.set_at)})"
    _print(console, line)


def _key_record(key: accounts_pb2.NodeKey) -> dict[str, Any]:
    return {
        "public_key": key.public_key,
        "name": key.name,
        "added_at": key.added_at,
        "added_by": key.added_by,
    }


def node_keys_command(args: argparse.Namespace, console: Console) -> int:
    """``corolla nodes keys|add|remove``: the node keys the link admits."""
    connection = resolve_connection(args)
    action = args.action
    if action in ("add", "remove") and not args.key:
        raise ConfigError(
            f"corolla nodes {action} needs the node's public key (`corolla node keys` prints "
            "it on the node's machine)"
        )
    if action == "keys" and args.key:
        raise ConfigError("corolla nodes keys takes no key; did you mean `corolla nodes add`?")
    with connection.client() as client:
        if action == "add":
            key = client.accounts.add_node_key(args.key, args.name or "")
            named = f" ({key.name})" if key.name else ""
            _print(console, f"registered {key.public_key}{named}")
            return 0
        if action == "remove":
            client.accounts.remove_node_key(args.key)
            _print(console, f"removed {args.key}: its node is refused from its next call on")
            return 0
        keys = client.accounts.list_node_keys()
    records = [_key_record(k) for k in keys]
    if args.format == "json":
        document = {"link": str(connection.address), "keys": records}
        console.file.write(json.dumps(document, indent=2) + "\n")
        return 0
    table = Table(title=Text(f"Node keys of {connection.address}"))
    table.add_column("public key", no_wrap=True)
    for column in ("name", "added", "by"):
        table.add_column(column)
    for record in records:
        table.add_row(
            record["public_key"],
            Text(record["name"]),
            _time(record["added_at"]),
            Text(record["added_by"]),
        )
    console.print(table)
    return 0
