"""``corolla accounts``, ``login``, ``logout`` and ``nodes keys|add|remove`` as a user runs
them, against a real ``corolla link --auth``: the bootstrap step, logins saved per link,
and each role refused what it may not do, with a clear error and an audit record."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from corolla.trust import NodeKey

from .commands import Background, corolla, free_port, wait_until

ROOT_PASSWORD = "root-password"
APP = Path(__file__).resolve().parents[2] / "examples" / "quickstart-numpy"


def _ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    return done.stdout


def _audit(state: Path, kind: str) -> list[dict[str, object]]:
    lines = (state / "audit.log").read_text("utf-8").splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def test_a_link_with_auth_and_no_admin_says_how_to_bootstrap(tmp_path: Path) -> None:
    done = corolla(
        tmp_path, "link", "--auth", "--state", "state", "--control-address", "127.0.0.1:0"
    )

    assert done.returncode == 2
    assert "corolla accounts init --state state NAME" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_first_admin_is_made_once(tmp_path: Path) -> None:
    # Act
    first = corolla(
        tmp_path,
        "accounts",
        "init",
        "--state",
        "s",
        "root",
        "--password-stdin",
        stdin="pw-12345678\n",
    )
    second = corolla(
        tmp_path,
        "accounts",
        "init",
        "--state",
        "s",
        "eve",
        "--password-stdin",
        stdin="pw-12345678\n",
    )
    no_terminal = corolla(tmp_path, "accounts", "init", "--state", "t", "root")

    # Assert: the store is its owner's only; a second admin is refused; no password is
    # ever read from a pipe unasked
    assert "created admin 'root'" in _ok(first)
    assert stat.S_IMODE(os.stat(tmp_path / "s" / "trust.db").st_mode) == 0o600
    assert second.returncode == 2
    assert "has an admin already (root)" in second.stderr
    assert no_terminal.returncode == 2
    assert "--password-stdin" in no_terminal.stderr
    assert _audit(tmp_path / "s", "account.init")[0]["actor"] == "root"


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[str]:
    """A ``corolla link --auth`` with admin ``root`` and two nodes; its control address."""
    _ok(
        corolla(
            tmp_path,
            "accounts",
            "init",
            "--state",
            "state",
            "root",
            "--password-stdin",
            stdin=ROOT_PASSWORD + "\n",
        )
    )
    control = f"127.0.0.1:{free_port()}"
    fleet = f"127.0.0.1:{free_port()}"
    procs = Background(tmp_path)
    try:
        procs.start(
            "link",
            "link",
            "--auth",
            "--federation",
            "hospitals",
            "--state",
            "state",
            "--fleet-address",
            fleet,
            "--control-address",
            control,
        )
        log = tmp_path / "link.log"
        wait_until(lambda: "accounts required" in log.read_text(), "the link's start")
        # The admin registers each node's key, as its data owner printed it.
        link = ("--link", control)
        login = ("login", *link, "--user", "root", "--password-stdin")
        _ok(corolla(tmp_path, *login, home="setup", stdin=ROOT_PASSWORD))
        for i in range(2):
            key = _ok(corolla(tmp_path, "node", "keys", "--state", f"node{i}")).strip()
            _ok(corolla(tmp_path, "nodes", "add", key, "--name", f"node{i}", *link, home="setup"))
        for i in range(2):
            procs.start(
                f"node{i}",
                *("node", "--link", fleet, "--state", f"node{i}"),
                *("--node-config", f"partition-id={i}", "num-partitions=2"),
            )
        yield control
    finally:
        procs.stop_all()


@pytest.mark.e2e
def test_accounts_and_roles_through_the_cli(secured: str, tmp_path: Path) -> None:
    link = ("--link", secured)
    state = tmp_path / "state"
    key, _ = NodeKey.load_or_create(tmp_path / "node")

    # Nothing without a login, and the error says how
    refused = corolla(tmp_path, "ls", *link)
    assert refused.returncode == 1
    assert f"corolla login --link {secured} --user NAME" in refused.stderr

    # A wrong password is refused; the right one saves a token only its owner reads
    wrong = corolla(tmp_path, "login", *link, "--user", "root", "--password-stdin", stdin="x\n")
    assert wrong.returncode == 1 and "wrong account name or password" in wrong.stderr
    said = _ok(
        corolla(tmp_path, "login", *link, "--user", "root", "--password-stdin", stdin=ROOT_PASSWORD)
    )
    assert "as root (admin, federation hospitals)" in said
    saved = tmp_path / "home" / "tokens" / f"127.0.0.1_{secured.rpartition(':')[2]}.jwt"
    assert stat.S_IMODE(os.stat(saved).st_mode) == 0o600
    _ok(corolla(tmp_path, "ls", *link))

    # The admin makes an operator and a viewer, who log in as other users of the CLI
    for name, role in (("olga", "operator"), ("vic", "viewer")):
        _ok(
            corolla(
                tmp_path,
                *("accounts", "add", name, "--role", role, *link, "--password-stdin"),
                stdin=f"{name}-password\n",
            )
        )
        _ok(
            corolla(
                tmp_path,
                *("login", *link, "--user", name, "--password-stdin"),
                home=name,
                stdin=f"{name}-password\n",
            )
        )
    listed = json.loads(_ok(corolla(tmp_path, "accounts", "list", *link, "--format", "json")))
    assert {a["name"]: a["role"] for a in listed["accounts"]} == {
        "olga": "operator",
        "root": "admin",
        "vic": "viewer",
    }

    # A viewer may not submit a run; an operator may, and follows it to its result
    run = ("run", str(APP), *link, "--run-config", "num-server-rounds=1", "--quiet")
    viewer_run = corolla(tmp_path, *run, home="vic")
    assert viewer_run.returncode == 1
    assert "vic is a viewer; SubmitRun needs operator" in viewer_run.stderr
    wait_until(
        lambda: _ok(corolla(tmp_path, "nodes", *link, home="vic")).count("online") == 2,
        "two nodes online",
    )
    _ok(corolla(tmp_path, *run, "--output", "out", home="olga"))
    assert (tmp_path / "out").is_dir()
    runs = json.loads(_ok(corolla(tmp_path, "ls", *link, "--format", "json", home="vic")))
    assert [r["status"] for r in runs["runs"]] == ["finished"]
    assert [r["actor"] for r in _audit(state, "run.submit")] == ["olga"]

    # A viewer may not stop a run; an operator may (the run is unknown, so the link says
    # so: the call got past the access check)
    viewer_stop = corolla(tmp_path, "stop", "7", *link, home="vic")
    assert viewer_stop.returncode == 1
    assert "vic is a viewer; StopRun needs operator" in viewer_stop.stderr
    operator_stop = corolla(tmp_path, "stop", "7", *link, home="olga")
    assert "unknown run id 7" in operator_stop.stderr

    # An operator may not register a node; the admin may
    operator_add = corolla(tmp_path, "nodes", "add", key.public_text, *link, home="olga")
    assert operator_add.returncode == 1
    assert "olga is an operator; AddNodeKey needs admin" in operator_add.stderr
    _ok(corolla(tmp_path, "nodes", "add", key.public_text, "--name", "site-a", *link))
    keys = json.loads(_ok(corolla(tmp_path, "nodes", "keys", *link, "--format", "json")))
    assert [(k["public_key"], k["name"], k["added_by"]) for k in keys["keys"]][-1] == (
        key.public_text,
        "site-a",
        "root",
    )
    assert [k["name"] for k in keys["keys"]] == ["node0", "node1", "site-a"]

    # $COROLLA_TOKEN stands for a saved login
    token = saved.read_text().strip()
    _ok(corolla(tmp_path, "nodes", "keys", *link, home="nobody", token=token))

    # A password change voids the account's tokens issued before: vic's own change renews
    # vic's login, and a copy of the old token no longer works
    stolen = (tmp_path / "vic" / "tokens" / saved.name).read_text().strip()
    changed = corolla(
        tmp_path,
        *("accounts", "passwd", *link, "--password-stdin"),
        home="vic",
        stdin="vic-password\nvic-new-password\n",
    )
    assert "the tokens issued to it before are void" in _ok(changed)
    _ok(corolla(tmp_path, "ls", *link, home="vic"))
    copied = corolla(tmp_path, "ls", *link, home="nobody", token=stolen)
    assert copied.returncode == 1
    assert "issued before its password changed: log in again" in copied.stderr

    # An operator demoted to viewer loses the right at once
    _ok(corolla(tmp_path, "accounts", "set-role", "olga", "viewer", *link))
    demoted = corolla(tmp_path, "stop", "7", *link, home="olga")
    assert "olga is a viewer; StopRun needs operator" in demoted.stderr

    # The admin puts a policy in force at once (a mistake is named before any call); a
    # viewer reads it, with who set it
    written, wrong = tmp_path / "policy.toml", tmp_path / "wrong.toml"
    written.write_text('[nodes]\nrequired-attributes = {region = "eu"}\n')
    wrong.write_text("[nodes]\nregion = 1\n")
    mistake = corolla(tmp_path, "policy", "set", str(wrong), *link)
    assert mistake.returncode == 2
    assert f"{wrong}: unknown key 'region' in [nodes]" in mistake.stderr
    assert "is in force" in _ok(corolla(tmp_path, "policy", "set", str(written), *link))
    shown = _ok(corolla(tmp_path, "policy", "show", *link, home="vic"))
    assert "# set by root at " in shown
    assert 'required-attributes = {region = "eu"}' in shown

    # After logout, the admin's commands are refused again
    assert "logged out" in _ok(corolla(tmp_path, "logout", *link))
    assert corolla(tmp_path, "accounts", "list", *link).returncode == 1

    # Every refusal is in the link's audit log, with who was refused
    denied = _audit(state, "access.denied")
    assert {r["actor"] for r in denied} >= {"", "vic", "olga"}
    assert [r["data"]["name"] for r in _audit(state, "login.failed")] == ["root"]
    assert {r["actor"] for r in _audit(state, "login")} == {"root", "olga", "vic"}
