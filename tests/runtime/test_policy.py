"""Policy on both sides, end to end: a real ``corolla link`` and ``corolla node`` processes
on 127.0.0.1, each with its own policy file.

The link refuses nodes without the attributes its federation requires, apps off its
allow-list, and signatures that do not verify, each with an error naming the rule and an
audit record. A node refuses, with PERMISSION_DENIED error replies naming its own rule,
the runs its data owner's policy does not allow (without downloading their bundle) and
the rounds beyond its limit, while the other nodes go on training; and it keeps its
ClientApp's error details to itself when its policy says so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from corolla.core import CorollaError, ErrorCode, Event
from corolla.runtime import ControlClient
from corolla.runtime._bundle import make_bundle
from corolla.transport import run_pb2, sha256_of, user_config_from_proto
from corolla.trust import BundleSignature, SigningKey

from .test_e2e import Processes, _start_link, _wait_for_nodes
from .test_e2e import processes as processes  # the fixture
from .test_faults import WAIT_S, _app

SERVER_APP = """
import numpy as np

from corolla.core import ArrayRecord
from corolla.server import ServerApp
from corolla.strategy import FedAvg

app = ServerApp()


@app.main()
def main(grid, context):
    nodes = int(context.run_config["nodes"])
    strategy = FedAvg(
        fraction_train=1.0,
        fraction_evaluate=0.0,
        min_train_nodes=nodes,
        min_available_nodes=nodes,
        min_train_replies=1,
        seed=0,
    )
    rounds = int(context.run_config["num-server-rounds"])
    strategy.start(grid, ArrayRecord({"w": np.zeros(3, dtype=np.float32)}), num_rounds=rounds)
"""

CLIENT_APP = """
import os

import numpy as np

from corolla.client import ClientApp
from corolla.core import ArrayRecord, Message, MetricRecord, RecordDict

app = ClientApp()


@app.train()
def train(message, context):
    if context.node_config.get("fail", False):
        raise RuntimeError("cannot read " + os.path.abspath("private-records.csv"))
    arrays = message.content["arrays"]
    update = ArrayRecord({name: np.asarray(a) + 1 for name, a in arrays.items()})
    metrics = MetricRecord({"num-examples": 1})
    return Message(RecordDict({"arrays": update, "metrics": metrics}), reply_to=message)
"""


def _policy_app(root: Path, nodes: int, rounds: int) -> Path:
    config = f"nodes = {nodes}\nnum-server-rounds = {rounds}\n"
    return _app(root, "policy_app", SERVER_APP, CLIENT_APP, config)


def _bundle_hash(app: Path) -> str:
    return sha256_of(make_bundle(app))


def _policy(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _start_node(
    processes: Processes, tmp_path: Path, name: str, fleet: int, *extra: str
) -> subprocess.Popen[bytes]:
    return processes.start(
        name, "node", "--link", f"127.0.0.1:{fleet}", "--state", str(tmp_path / name), *extra
    )


def _audit(tmp_path: Path) -> list[dict[str, Any]]:
    lines = (tmp_path / "link" / "audit.log").read_text().splitlines()
    return [json.loads(line) for line in lines if line]


def _finished(client: ControlClient, run_id: int) -> list[Event]:
    events = [event for _, event in client.events(run_id, timeout=WAIT_S)]
    final = client.get_run(run_id)
    assert final.status == run_pb2.RUN_STATUS_FINISHED, final.status_reason
    return events


def _node_ids(client: ControlClient) -> dict[str, int]:
    """Node ids by their ``name`` attribute."""
    nodes = {}
    for node in client.list_nodes():
        name = user_config_from_proto(node.attributes).get("name")
        if name is not None:
            nodes[str(name)] = node.node_id
    return nodes


def _corolla(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "corolla", *args],
        capture_output=True,
        text=True,
        timeout=WAIT_S * 2,
        check=False,
        env=dict(os.environ, COROLLA_HOME=str(home)),
    )


def test_the_link_admits_only_its_federations_nodes_and_apps_and_a_node_caps_rounds(
    processes: Processes, tmp_path: Path
) -> None:
    # Arrange: a publisher's key; a link whose policy requires region=eu, allows one
    # other bundle by hash and the publisher's signed bundles; a node trusting the
    # publisher that answers 2 rounds of a run, one without policy, one in the wrong
    # region
    key_file = tmp_path / "publisher.pem"
    made = _corolla("keys", "create", str(key_file), home=tmp_path / "home")
    assert made.returncode == 0, made.stderr
    key = SigningKey.load(key_file)
    assert made.stdout.strip() == key.public_text
    shown = _corolla("keys", "show", str(key_file), home=tmp_path / "home")
    assert shown.stdout.strip() == key.public_text
    app = _policy_app(tmp_path / "app", nodes=2, rounds=3)
    listed = "5" * 64
    link_policy = _policy(
        tmp_path / "link-policy.toml",
        f"""
[nodes]
required-attributes = {{region = "eu"}}

[apps]
allowed-bundles = ["{listed}"]
trusted-signers = ["{key.public_text}"]
""",
    )
    capped = _policy(
        tmp_path / "capped.toml",
        f'[apps]\ntrusted-signers = ["{key.public_text}"]\n[runs]\nmax-rounds = 2\n',
    )
    fleet, control = _start_link(
        processes, tmp_path, "--heartbeat-interval", "1", "--policy", str(link_policy)
    )
    _start_node(
        processes,
        tmp_path,
        "capped",
        fleet,
        "--policy",
        str(capped),
        "--attributes",
        "region=eu",
        "name=capped",
    )
    _start_node(processes, tmp_path, "open", fleet, "--attributes", "region=eu", "name=open")
    outsider = _start_node(
        processes, tmp_path, "outsider", fleet, "--attributes", "region=us", "name=outsider"
    )
    bundle = _bundle_hash(app)

    with ControlClient(f"127.0.0.1:{control}") as client:
        _wait_for_nodes(client, 2, processes)

        # Act 1: an unsigned app, off the allow-list; one with a forged signature
        with pytest.raises(CorollaError) as unsigned:
            client.submit(app)
        with pytest.raises(CorollaError) as forged:
            client.submit(app, signing_keys=[_Forger(key)])  # type: ignore[list-item]
        runs_after_refusals = client.list_runs()

        # Act 2: the same app signed by the publisher, through the command line
        signed = _corolla(
            "run",
            str(app),
            "--link",
            f"127.0.0.1:{control}",
            "--signing-key",
            str(key_file),
            "--quiet",
            "--output",
            str(tmp_path / "out"),
            home=tmp_path / "home",
        )
        assert signed.returncode == 0, signed.stderr
        (run,) = client.list_runs()
        events = _finished(client, run.run_id)
        result = client.result(run.run_id)
        ids = _node_ids(client)

    # Assert: refused at submit with the rule named, nothing stored
    assert unsigned.value.code == ErrorCode.PERMISSION_DENIED
    assert f"link policy ({link_policy}, [apps] allowed-bundles and trusted-signers)" in str(
        unsigned.value
    )
    assert f"bundle {bundle} is not on the allow-list" in str(unsigned.value)
    assert forged.value.code == ErrorCode.PERMISSION_DENIED
    assert f"the signature by {key.public_text} is not a valid signature" in str(forged.value)
    assert runs_after_refusals == []
    # The node of another region never joined, and says why
    assert outsider.poll() is None
    assert set(ids) == {"capped", "open"}
    outsider_log = (tmp_path / "outsider.log").read_text()
    assert "[nodes] required-attributes" in outsider_log
    assert "region='us'; this federation admits only region='eu'" in outsider_log
    # The signed run went to the nodes with its signature; the capped node answered 2
    # rounds, then refused naming its rule, while the other trained on
    assert [s.public_key for s in run.bundle_signatures] == [key.public_text]
    errors = [e for e in events if e.kind == "reply.error"]
    assert [(e.round, e.node_id, e.data["code"]) for e in errors] == [
        (3, ids["capped"], int(ErrorCode.PERMISSION_DENIED))
    ]
    assert f"node policy ({capped}, [runs] max-rounds)" in errors[0].data["reason"]
    assert result is not None and result.history is not None
    rounds = {r.round: r for r in result.history.rounds}
    assert [(rounds[i].train_replies, rounds[i].train_failures) for i in (1, 2, 3)] == [
        (2, 0),
        (2, 0),
        (1, 1),
    ]
    # Each decision is in the link's audit log, with its rule
    audit = _audit(tmp_path)
    refused = [r for r in audit if r["kind"] == "policy.refused"]
    admitted = [r for r in audit if r["kind"] == "policy.admitted"]
    assert any("[nodes] required-attributes" in r["data"]["rule"] for r in refused)
    assert any(
        r["data"].get("bundle") == bundle and "allowed-bundles" in r["data"]["rule"]
        for r in refused
    )
    assert any(r["data"].get("signer") == key.public_text for r in refused)
    assert any("[apps] trusted-signers" in r["data"]["rule"] for r in admitted)
    assert any("[nodes] required-attributes" in r["data"]["rule"] for r in admitted)


def test_a_node_refuses_a_bundle_off_its_allow_list_and_withholds_error_details(
    processes: Processes, tmp_path: Path
) -> None:
    # Arrange: a link without policy; a node allowing only another bundle, one without
    # policy, and one that keeps error details to itself and whose ClientApp fails
    app = _policy_app(tmp_path / "app", nodes=3, rounds=1)
    bundle = _bundle_hash(app)
    strict = _policy(tmp_path / "strict.toml", f'[apps]\nallowed-bundles = ["{"7" * 64}"]\n')
    discreet = _policy(tmp_path / "discreet.toml", '[errors]\ndetails = "summary"\n')
    fleet, control = _start_link(processes, tmp_path, "--heartbeat-interval", "1")
    _start_node(
        processes, tmp_path, "strict", fleet, "--policy", str(strict), "--attributes", "name=strict"
    )
    _start_node(processes, tmp_path, "open", fleet, "--attributes", "name=open")
    _start_node(
        processes,
        tmp_path,
        "discreet",
        fleet,
        "--policy",
        str(discreet),
        "--attributes",
        "name=discreet",
        "--node-config",
        "fail=true",
    )

    with ControlClient(f"127.0.0.1:{control}") as client:
        _wait_for_nodes(client, 3, processes)

        # Act
        run = client.submit(app)
        events = _finished(client, run.run_id)
        result = client.result(run.run_id)
        ids = _node_ids(client)

    # Assert: the strict node refused naming its rule, the open one trained
    errors = {e.node_id: e.data for e in events if e.kind == "reply.error"}
    assert set(errors) == {ids["strict"], ids["discreet"]}
    refusal = errors[ids["strict"]]
    assert refusal["code"] == int(ErrorCode.PERMISSION_DENIED)
    assert f"node policy ({strict}, [apps] allowed-bundles)" in refusal["reason"]
    assert f"bundle {bundle} is not on the allow-list" in refusal["reason"]
    assert result is not None and result.history is not None
    (round_1,) = [r for r in result.history.rounds if r.round == 1]
    assert (round_1.train_replies, round_1.train_failures) == (1, 2)
    # The strict node never downloaded the bundle, and its log says why it refused
    assert not (tmp_path / "strict" / "apps" / bundle).exists()
    assert "[apps] allowed-bundles" in (tmp_path / "strict.log").read_text()
    # The discreet node's error: its code and one line, no traceback, no path; the
    # details stay in its own log
    failure = errors[ids["discreet"]]
    assert failure["code"] == int(ErrorCode.CLIENT_APP_RAISED)
    assert "RuntimeError" in failure["reason"] and "withheld" in failure["reason"]
    assert "Traceback" not in failure["reason"] and "\n" not in failure["reason"]
    assert "private-records.csv" not in failure["reason"] and str(tmp_path) not in failure["reason"]
    discreet_log = (tmp_path / "discreet.log").read_text()
    assert "Traceback" in discreet_log and "private-records.csv" in discreet_log


class _Forger:
    """Signs with the publisher's public key text a signature over another bundle."""

    def __init__(self, key: SigningKey) -> None:
        self._key = key

    def sign_bundle(self, sha256: str) -> BundleSignature:
        other = self._key.sign_bundle("0" * 64)
        return BundleSignature(other.public_key, other.signature)
