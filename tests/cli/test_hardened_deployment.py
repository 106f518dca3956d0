"""The hardened deployment of docs/security.md, step by step, on one machine: TLS with node
certificates, accounts, registered node keys signing every request, policies on both
sides, a signed app, and audit logs that verify afterwards. A node whose key nobody
registered is kept out, and says why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .commands import Background, corolla, free_port, wait_until

APP = Path(__file__).resolve().parents[2] / "examples" / "quickstart-numpy"
PASSWORD = "alice-password"


def _corolla(cwd: Path, *args: str, home: str = "home", stdin: str = "") -> str:
    done = corolla(cwd, *args, timeout=180, home=home, stdin=stdin)
    assert done.returncode == 0, f"corolla {' '.join(args)}: {done.stderr}"
    return done.stdout


def _records(log: Path, kind: str) -> list[dict[str, object]]:
    return [r for r in map(json.loads, log.read_text().splitlines()) if r["kind"] == kind]


@pytest.mark.e2e
def test_a_hardened_deployment_runs_a_signed_app_and_keeps_out_an_unregistered_node(
    tmp_path: Path,
) -> None:
    # 1. Certificates: a CA, the link's, and a node certificate (mutual TLS).
    _corolla(tmp_path, "certs", "certs")
    # 2. The first admin, on the link's machine, before the link requires accounts.
    _corolla(
        tmp_path, "accounts", "init", "--state", "link", "alice", "--password-stdin",
        stdin=PASSWORD + "\n",
    )  # fmt: skip
    # 3. A publisher's signing key, trusted by the link's and the nodes' policies.
    publisher = _corolla(tmp_path, "keys", "create", "publisher.pem").strip().split()[-1]
    assert publisher.startswith("ed25519:")
    (tmp_path / "link-policy.toml").write_text(
        f'[nodes]\nrequired-attributes = {{region = "eu"}}\n\n'
        f'[apps]\ntrusted-signers = ["{publisher}"]\n'
    )
    (tmp_path / "node-policy.toml").write_text(
        f'[apps]\ntrusted-signers = ["{publisher}"]\n\n[runs]\nmax-rounds = 10\n\n'
        '[errors]\ndetails = "summary"\n'
    )
    fleet, control = free_port(), free_port()
    tls = ("--root-certificates", "certs/ca.pem")
    link = ("--link", f"localhost:{control}", *tls)
    procs = Background(tmp_path)
    try:
        procs.start(
            "link", "link", "--state", "link",
            "--fleet-address", f"127.0.0.1:{fleet}", "--control-address", f"127.0.0.1:{control}",
            "--certificates", "certs", "--require-node-certificates",
            "--auth", "--federation", "hospitals", "--policy", "link-policy.toml",
        )  # fmt: skip
        wait_until(lambda: "corolla link:" in (tmp_path / "link.log").read_text(), "link start")
        # 4. Each data owner prints their node's key and hands it to the admin.
        keys = [_corolla(tmp_path, "node", "keys", "--state", f"node{i}").strip() for i in (0, 1)]
        _corolla(tmp_path, "login", *link, "--user", "alice", "--password-stdin", stdin=PASSWORD)
        for i, key in enumerate(keys):
            _corolla(tmp_path, "nodes", "add", key, "--name", f"site-{i}", *link)
        # 5. The nodes: the link's CA, their certificate, their own policy.
        node = (
            "node", "--link", f"localhost:{fleet}", *tls,
            "--certificate", "certs/node.pem", "--key", "certs/node.key",
            "--policy", "node-policy.toml", "--attributes", "region=eu",
        )  # fmt: skip
        for i in (0, 1):
            procs.start(
                f"node{i}", *node, "--state", f"node{i}",
                "--node-config", f"partition-id={i}", "num-partitions=2",
            )  # fmt: skip
        # and one whose key nobody registered
        procs.start("stranger", *node, "--state", "stranger", "--node-config", "partition-id=0")
        wait_until(
            lambda: _corolla(tmp_path, "nodes", *link).count("online") == 2, "two nodes online"
        )

        # Act: 6. an operator's signed run
        _corolla(
            tmp_path, "run", str(APP), *link, "--signing-key", "publisher.pem",
            "--run-config", "num-server-rounds=2", "--output", "out", "--quiet",
        )  # fmt: skip
        listed = json.loads(_corolla(tmp_path, "nodes", *link, "--format", "json"))
    finally:
        procs.stop_all()

    # Assert: the run finished on the two registered nodes only
    rounds = json.loads((tmp_path / "out" / "history.json").read_text())["rounds"]
    assert [r.get("train_replies") for r in rounds if r.get("train_replies")] == [2, 2]
    assert len(listed["nodes"]) == 2
    stranger_log = (tmp_path / "stranger.log").read_text()
    assert "is not registered on this link" in stranger_log
    # 7. Every audit log verifies, and holds what happened
    for state in ("link", "node0", "node1"):
        _corolla(tmp_path, "audit", "verify", state)
    link_log = tmp_path / "link" / "audit.log"
    joined = {r["data"]["key"] for r in _records(link_log, "node.join")}  # type: ignore[index]
    assert joined == set(keys)
    (submitted,) = _records(link_log, "run.submit")
    assert submitted["actor"] == "alice"
    refused = _records(link_log, "request.refused")
    assert any("is not registered" in str(r["data"]) for r in refused)
    assert _records(link_log, "policy.admitted")
    ran = _records(tmp_path / "node0" / "audit.log", "message.ran")
    assert ran and all(r["data"]["outcome"] == "ok" for r in ran)  # type: ignore[index]
