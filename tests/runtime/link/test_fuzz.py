"""A running ``corolla link`` fuzzed on every method of its Fleet, Control, RunArtifacts
and Accounts services: raw bytes, edited and extreme requests, streams cut short, garbage
metadata; once without ``--auth`` and once with it (every call then carries an account
token or a node's signatures, valid so that broken requests reach the handlers, or
broken: forged, expired, replayed, malformed).

Every call ends with a gRPC status whose details are short and name neither a traceback
nor a path of the link's machine; the link stays up; a call with broken credentials is
refused; after the fuzz the link's memory, open files, blobs, state and audit log have
not grown beyond a bound, its audit log verifies, and it serves a normal run (with auth:
of nodes whose keys an admin registered, submitted by an operator who logged in).

``COROLLA_FUZZ_EXAMPLES`` sets the examples per method and kind of input (default 3, about
a minute for both links); ``COROLLA_FUZZ_SEED`` a seed (by default each method has a
fixed seed of its own: the examples are the same every run); ``COROLLA_FUZZ_MODES`` the
links to fuzz (default ``open,auth``). A longer run (see ``docs/security.md``)::

    COROLLA_FUZZ_EXAMPLES=5000 .venv/bin/pytest tests/runtime/link/test_fuzz.py -s
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
import psutil
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, seed, settings
from hypothesis import strategies as st

from corolla.runtime import ControlClient, Link
from corolla.transport import (
    bearer_metadata,
    channel_options,
    chunk_messages,
    control_pb2,
    fleet_pb2,
    fleet_pb2_grpc,
    sha256_of,
    user_config_to_proto,
)
from corolla.trust import PUBLIC_KEY_KEY, NodeKey, TrustStore, sign_request

from ...cli.commands import environment
from ..test_e2e import APP, Processes, _free_port
from .fuzzing import (
    ADMIN,
    CALL_S,
    MAX_DETAILS,
    METHODS,
    PASSWORD,
    RSS_EVERY,
    VIEWER,
    WATCHER,
    Credentials,
    Method,
    Target,
    as_sent,
    call,
    check_outcome,
    check_refused,
    check_replay_refused,
    credentials,
    mutated_requests,
    raw_requests,
    reply,
)

EXAMPLES = int(os.environ.get("COROLLA_FUZZ_EXAMPLES", "3"))
SEED = os.environ.get("COROLLA_FUZZ_SEED")
MODES = os.environ.get("COROLLA_FUZZ_MODES", "open,auth").split(",")
FEDERATION = "fuzzing"
#: Registered keys the fuzz registers nodes with, in turn (each may register 10 times a
#: minute).
REGISTERING_KEYS = 6
STARTUP_S = 60.0
RUN_S = 180.0
#: Seconds between heartbeats: the nodes the fuzz registered are offline a few seconds
#: after it, so that the normal run is sent to real nodes only.
HEARTBEAT_S = 1.0
#: Growth allowed after the fuzz: memory (the allocator keeps freed arenas), file
#: descriptors, and files under blobs/ (one blob per distinct payload the fuzz stored).
MAX_RSS_GROWTH = 100 * 1024 * 1024
MAX_FD_GROWTH = 32
MAX_BLOB_FILES = 64
#: Growth of the state directory allowed beyond the settings of the nodes registered (up
#: to the link's max_config_bytes for attributes and node config each): events, WAL.
MAX_STATE_GROWTH = 16 * 1024 * 1024
CONFIG_BYTES = 2 * 64 * 1024
#: Growth of the audit log allowed per call the fuzz made: a record for most (a refused
#: request, a login, a change), a few hundred bytes each; a record quoting what a caller
#: sent whole would be up to megabytes.
MAX_AUDIT_BYTES_PER_CALL = 1024
MAX_AUDIT_GROWTH = 1024 * 1024

F = TypeVar("F", bound=Callable[..., Any])


def fuzzing(method: Method, mode: str) -> Callable[[F], F]:
    """A test of ``method`` with the examples of this run, and a seed of its own (the
    run's seed and the method's and link's names): without one, examples derandomized
    per test function would be the same draws for every method."""

    def configured(test: F) -> F:
        base = 0 if SEED is None else int(SEED)
        own = seed(base ^ zlib.crc32(f"{mode} {method}".encode()))
        # Without a seed of the run's, no example database: the same examples every run.
        database = {"database": None} if SEED is None else {}
        return own(settings(max_examples=EXAMPLES, deadline=None, **database)(test))

    return configured


def _wait(what: str, ready: Callable[[], bool], process: Any) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the link exited while waiting for {what}"
        try:
            if ready():
                return
        except (ConnectionError, grpc.RpcError):
            pass  # not up yet
        time.sleep(0.1)
    pytest.fail(f"{what} within {STARTUP_S} s")


def _register(fleet: grpc.Channel, key: NodeKey | None) -> tuple[int, str]:
    """A node registered (with ``key``, signing, if the link requires keys)."""
    stub = fleet_pb2_grpc.FleetStub(fleet)
    config = user_config_to_proto({"partition-id": 0})
    request = fleet_pb2.RegisterNodeRequest(node_config=config)
    metadata: tuple[tuple[str, str], ...] = ()
    if key is not None:
        body = request.SerializeToString(deterministic=True)
        signed = sign_request(key, "/corolla.v1.Fleet/RegisterNode", body)
        metadata = (*signed.metadata(), (PUBLIC_KEY_KEY, key.public_text))
    answer = stub.RegisterNode(request, metadata=metadata, timeout=10)
    return answer.node_id, answer.token


def _push(fleet: grpc.Channel, token: str, payload: bytes, key: NodeKey | None) -> str:
    digest = sha256_of(payload)
    stub = fleet_pb2_grpc.FleetStub(fleet)
    metadata = bearer_metadata(token)
    if key is not None:
        metadata += sign_request(key, "/corolla.v1.Fleet/PushArrays", b"").metadata()
    stub.PushArrays(chunk_messages(payload, sha256=digest), metadata=metadata, timeout=10)
    return digest


def _corolla(root: Path, home: str, *args: str, stdin: str = "") -> str:
    """``corolla args`` as a user runs it, with its own ``$COROLLA_HOME``; its output."""
    done = subprocess.run(
        [sys.executable, "-m", "corolla", *args],
        cwd=root,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=RUN_S,
        check=False,
        env=environment(root / home),
    )
    assert done.returncode == 0, f"corolla {' '.join(args)}: {done.stderr}"
    return done.stdout


def _new_key() -> NodeKey:
    return NodeKey(Ed25519PrivateKey.generate())


class _Usage:
    """What the link process holds: memory, file descriptors, files under blobs/."""

    def __init__(self, target: Target) -> None:
        process = psutil.Process(target.process.pid)
        self.rss = process.memory_info().rss
        self.fds = process.num_fds()
        self.blob_files = sum(1 for p in (target.state_dir / "blobs").rglob("*") if p.is_file())
        files = [p for p in target.state_dir.rglob("*") if p.is_file()]
        self.state_bytes = sum(p.stat().st_size for p in files)
        self.audit_bytes = (target.state_dir / "audit.log").stat().st_size

    def __str__(self) -> str:
        return (
            f"RSS {self.rss / 2**20:.1f} MiB, {self.fds} fds, {self.blob_files} blob files, "
            f"state directory {self.state_bytes / 2**20:.1f} MiB, "
            f"audit log {self.audit_bytes / 2**20:.2f} MiB"
        )


@pytest.fixture(scope="module", params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    """``open``: a link without accounts; ``auth``: ``corolla link --auth``."""
    return str(request.param)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory, mode: str) -> Path:
    return tmp_path_factory.mktemp(f"fuzz-{mode}")


@pytest.fixture(scope="module")
def processes_for_module(fuzz_dir: Path) -> Iterator[Processes]:
    procs = Processes(fuzz_dir)
    try:
        yield procs
    finally:
        procs.stop_all()


@pytest.fixture(scope="module")
def target(processes_for_module: Processes, fuzz_dir: Path, mode: str) -> Iterator[Target]:
    """A link with two registered nodes, a stopped run, a stored payload, warmed up; with
    auth, an admin and two viewers (one logged in), and registered node keys."""
    procs = processes_for_module
    root = fuzz_dir
    auth = mode == "auth"
    state = root / "link"
    if auth:
        init = ("accounts", "init", "--state", str(state), ADMIN, "--password-stdin")
        _corolla(root, "admin", *init, stdin=PASSWORD + "\n")
    fleet_port, control_port = _free_port(), _free_port()
    link = procs.start(
        "link",
        "link",
        "--state",
        str(root / "link"),
        "--fleet-address",
        f"127.0.0.1:{fleet_port}",
        "--control-address",
        f"127.0.0.1:{control_port}",
        "--heartbeat-interval",
        str(HEARTBEAT_S),
        *(("--auth", "--federation", FEDERATION) if auth else ()),
    )
    control_address = f"127.0.0.1:{control_port}"
    options = channel_options()
    with ControlClient(control_address) as anonymous:
        if auth:
            _wait(
                "the link to serve", lambda: bool(anonymous.accounts.login(ADMIN, PASSWORD)), link
            )
            admin_token = anonymous.accounts.login(ADMIN, PASSWORD).token
        else:
            _wait("the link to serve", lambda: anonymous.list_nodes() is not None, link)
            admin_token = ""
    keys = [_new_key() for _ in range(3 + REGISTERING_KEYS)]
    viewer_token = token_key = b""
    with (
        grpc.insecure_channel(f"127.0.0.1:{fleet_port}", options=options) as fleet,
        grpc.insecure_channel(control_address, options=options) as control,
        ControlClient(control_address, token=admin_token or None) as client,
    ):
        if auth:
            for name in (WATCHER, VIEWER):
                client.accounts.add_account(name, "viewer", PASSWORD)
            viewer_token = client.accounts.login(WATCHER, PASSWORD).token
            for i, key in enumerate(keys):
                client.accounts.add_node_key(key.public_text, f"fuzz-{i}")
            with TrustStore(state / TrustStore.FILE) as trust:
                token_key = trust.secret("token-key")
        node_key, other_key = (keys[0], keys[1]) if auth else (None, None)
        node_id, token = _register(fleet, node_key)
        other_node_id, other_token = _register(fleet, other_key)
        run = client.submit(APP, {"num-server-rounds": 1})
        client.stop_run(run.run_id, "a run for the fuzz to name")
        payload = bytes(range(256)) * 4
        garbage = b"not a zip archive " * 20
        found = Target(
            process=link,
            state_dir=(root / "link").resolve(),
            fleet_address=f"127.0.0.1:{fleet_port}",
            control_address=f"127.0.0.1:{control_port}",
            fleet=fleet,
            control=control,
            node_id=node_id,
            token=token,
            other_node_id=other_node_id,
            other_token=other_token,
            run_id=run.run_id,
            bundle_sha256=run.bundle_sha256,
            payload=payload,
            payload_sha256=_push(fleet, token, payload, node_key),
            garbage_bundle=garbage,
            garbage_bundle_sha256=sha256_of(garbage),
            auth=auth,
            federation=FEDERATION,
            admin_token=str(admin_token),
            viewer_token=str(viewer_token),
            token_key=bytes(token_key),
            node_keys={node_id: keys[0], other_node_id: keys[1]} if auth else {},
            registering_keys=keys[3:],
            spare_key=keys[2].public_text,
        )
        # Warm up: every method called validly a few times, so that what the link
        # allocates once (threads, caches, gRPC's buffers) is there before it is measured.
        for _ in range(3):
            for method in METHODS:
                requests = [r.SerializeToString() for r in method.valid(found)]
                call(found, method, *as_sent(method, found, requests))
        found.outcomes.clear()
        yield found


@pytest.fixture(scope="module")
def before(target: Target) -> _Usage:
    return _Usage(target)


@pytest.mark.parametrize("method", METHODS, ids=str)
def test_raw_bytes_as_requests_end_with_a_status(
    target: Target, before: _Usage, mode: str, method: Method
) -> None:
    @fuzzing(method, mode)
    @given(requests=raw_requests(method), cut=st.booleans())
    def fuzz(requests: list[bytes], cut: bool) -> None:
        outcome = call(
            target, method, *as_sent(method, target, requests), cut=cut and bool(requests)
        )
        check_outcome(target, method, outcome)

    fuzz()


@pytest.mark.parametrize("method", METHODS, ids=str)
def test_edited_and_extreme_requests_end_with_a_status(
    target: Target, before: _Usage, mode: str, method: Method
) -> None:
    @fuzzing(method, mode)
    @given(data=st.data(), cut=st.booleans())
    def fuzz(data: st.DataObject, cut: bool) -> None:
        requests = data.draw(mutated_requests(method, target))
        cut = cut and method.streams_requests and bool(requests)
        outcome = call(target, method, *as_sent(method, target, requests), cut=cut)
        check_outcome(target, method, outcome)

    fuzz()


@pytest.mark.parametrize("method", METHODS, ids=str)
def test_garbage_or_broken_credentials_end_with_a_status_and_are_refused(
    target: Target, before: _Usage, mode: str, method: Method
) -> None:
    @fuzzing(method, mode)
    @given(sent=credentials(method, target))
    def fuzz(sent: Credentials) -> None:
        outcome = call(target, method, sent.requests, sent.metadata)
        check_outcome(target, method, outcome)
        check_refused(method, sent, outcome)
        target.faults.update(sent.faults or ["replayed" if sent.replay else "none"])
        if sent.replay:
            replayed = call(target, method, sent.requests, sent.metadata)
            check_outcome(target, method, replayed)
            check_replay_refused(method, replayed)

    fuzz()


def test_after_the_fuzz_the_link_is_bounded_and_serves_a_run(
    target: Target, before: _Usage, processes_for_module: Processes, fuzz_dir: Path
) -> None:
    # Arrange: what the fuzz left, then two real nodes (with auth: their keys registered
    # by the admin, as their owners printed them)
    after = _Usage(target)
    calls = target.outcomes.total()
    trace = ", ".join(f"{rss:.0f}" for rss in target.rss_trace)
    report = [
        f"{'with' if target.auth else 'without'} auth, before the fuzz: {before}",
        f"after the fuzz ({calls} calls): {after}",
        f"RSS every {RSS_EVERY} calls (MiB): {trace}",
    ]
    report += [
        f"  {m}: {code} x{n}  {target.samples[m, code]!r}"
        for (m, code), n in sorted(target.outcomes.items())
    ]
    if target.auth:
        report.append("credentials broken (calls):")
        report += [f"  {fault}: {n}" for fault, n in sorted(target.faults.items())]
    print("\n".join(report))
    root, link = fuzz_dir, ("--link", target.control_address)
    admin = ControlClient(target.control_address, token=target.admin_token or None)
    states = [str(root / f"node{i}") for i in range(2)]
    if target.auth:
        for i, state in enumerate(states):
            key = _corolla(root, "admin", "node", "keys", "--state", state).strip()
            admin.accounts.add_node_key(key, f"node{i}")
    with admin:
        known = {n.node_id for n in admin.list_nodes()}
        for i, state in enumerate(states):
            processes_for_module.start(
                f"node{i}",
                *("node", "--link", target.fleet_address, "--state", state),
                *("--node-config", f"partition-id={i}", "num-partitions=2"),
            )

        def two_real_nodes_only() -> bool:
            online = {n.node_id for n in admin.list_nodes() if n.status == 1}
            return len(online) == 2 and not online & known

        _wait("the two nodes alone online", two_real_nodes_only, target.process)
        if target.auth:  # an operator, who logs in with the CLI
            admin.accounts.add_account("olga", "operator", PASSWORD)
            login = ("login", *link, "--user", "olga", "--password-stdin")
            _corolla(root, "olga", *login, stdin=PASSWORD + "\n")

    # Act
    overrides = ("num-server-rounds=2", "seed=0", "fraction-train=1.0")
    run = ("run", str(APP), *link, "--run-config", *overrides, "--output", "out", "--quiet")
    _corolla(root, "olga", *run)
    verified = _corolla(root, "admin", "audit", "verify", str(target.state_dir))

    # Assert
    assert after.rss - before.rss < MAX_RSS_GROWTH, "\n".join(report)
    assert after.fds - before.fds < MAX_FD_GROWTH, "\n".join(report)
    assert after.blob_files < MAX_BLOB_FILES, "\n".join(report)
    registered = target.outcomes["Fleet.RegisterNode", "OK"]
    allowed = MAX_STATE_GROWTH + registered * CONFIG_BYTES
    assert after.state_bytes - before.state_bytes < allowed, "\n".join(report)
    audit_allowed = MAX_AUDIT_GROWTH + calls * MAX_AUDIT_BYTES_PER_CALL + registered * CONFIG_BYTES
    assert after.audit_bytes - before.audit_bytes < audit_allowed, "\n".join(report)
    history = json.loads((root / "out" / "history.json").read_text())
    assert len(history["rounds"]) == 3, history  # rounds 0..2
    assert "intact" in verified, verified
    assert target.process.poll() is None


# Inputs the fuzz found the link mishandling, replayed.


def _method(path: str) -> Method:
    return next(m for m in METHODS if str(m) == path)


def test_a_submission_naming_a_megabyte_long_bundle_hash_gets_a_short_clear_reason(
    target: Target,
) -> None:
    # Arrange: the error quoted the hash whole, past what gRPC lets a caller read
    method = _method("Control.SubmitRun")
    spec = control_pb2.RunSpec(bundle_sha256="z" * (1 << 20), bundle_size=1)
    request = control_pb2.SubmitRunRequest(spec=spec).SerializeToString()

    # Act
    outcome = call(target, method, *as_sent(method, target, [request]))

    # Assert
    assert outcome.code is grpc.StatusCode.INVALID_ARGUMENT, outcome
    assert "a bundle hash is a SHA-256" in outcome.details
    assert len(outcome.details) <= MAX_DETAILS
    check_outcome(target, method, outcome)


def test_a_reply_to_a_megabyte_long_message_id_is_refused_briefly_and_logged_briefly(
    target: Target,
) -> None:
    # Arrange: the reason quoted the id whole, the run's events kept it, and so did the
    # audit log (4 MiB a refused reply)
    request = reply(target)
    request.message.metadata.reply_to_message_id = "x" * (4 << 20)
    single, stream = _method("Fleet.SendReply"), _method("Fleet.SendReplies")
    data = request.SerializeToString()
    audit_log = target.state_dir / "audit.log"
    audit_before = audit_log.stat().st_size

    # Act
    refused = call(target, single, *as_sent(single, target, [data]))
    refused_on_stream = call(target, stream, *as_sent(stream, target, [data]))

    # Assert
    assert refused.code is grpc.StatusCode.NOT_FOUND, refused
    assert len(refused.details) <= MAX_DETAILS
    assert len(refused_on_stream.reasons) == 1
    assert len(refused_on_stream.reasons[0]) <= MAX_DETAILS
    check_outcome(target, single, refused)
    check_outcome(target, stream, refused_on_stream)
    with ControlClient(target.control_address, token=target.admin_token or None) as client:
        events = client.events(target.run_id, follow=False)
        rejected = [e for _, e in events if e.kind == "reply.rejected"]
    assert len(rejected) >= 2
    assert all(len(json.dumps(e.data)) <= 2 * MAX_DETAILS for e in rejected[-2:])
    assert audit_log.stat().st_size - audit_before < 4 * MAX_DETAILS


def test_refused_replies_of_megabytes_do_not_pile_up_in_the_link_s_memory(
    target: Target,
) -> None:
    # Arrange: a refused reply's error kept, through its traceback, the batch of replies
    # it was refused in, in a cycle that only a (rare) garbage collection freed: about
    # 9 MiB more per refused reply of 4 MiB
    expired, unknown = reply(target), reply(target)
    for request in (expired, unknown):
        request.message.metadata.reply_to_message_id = "x" * (4 << 20)
    expired.message.metadata.ttl = 0  # refused on its way in, by an error raised from another
    single, stream = _method("Fleet.SendReply"), _method("Fleet.SendReplies")
    requests = [expired.SerializeToString(), unknown.SerializeToString()]
    link = psutil.Process(target.process.pid)
    for data in requests:  # gRPC's and the allocator's buffers for messages this large
        call(target, single, *as_sent(single, target, [data]))
    before = link.memory_info().rss

    # Act
    for _ in range(10):
        for data in requests:
            check_outcome(target, single, call(target, single, *as_sent(single, target, [data])))
        check_outcome(target, stream, call(target, stream, *as_sent(stream, target, requests)))

    # Assert
    grown = (link.memory_info().rss - before) / 2**20
    assert grown < 64, f"the link's memory grew by {grown:.0f} MiB over 40 refused replies"


def test_a_rejoin_with_a_node_id_of_non_ascii_digits_is_refused_as_a_malformed_token(
    target: Target,
) -> None:
    # Arrange: "²" passed str.isdigit() and failed int(): an internal error
    method = _method("Fleet.RegisterNode")
    request = fleet_pb2.RegisterNodeRequest(node_id=2, token="².secret").SerializeToString()

    # Act
    outcome = call(target, method, *as_sent(method, target, [request]))

    # Assert
    assert outcome.code is grpc.StatusCode.UNAUTHENTICATED, outcome
    assert outcome.details == "malformed node token"
    check_outcome(target, method, outcome)


def test_a_submission_its_caller_cancels_midway_is_not_logged_as_a_failure(
    link: Link, caplog: pytest.LogCaptureFixture
) -> None:
    # Arrange: the request stream raised grpc.RpcError in the handler, logged with its
    # traceback as an error of the link
    caplog.set_level(logging.INFO, logger="corolla.runtime.link")
    spec = control_pb2.RunSpec(bundle_sha256="0" * 64, bundle_size=10)
    request = control_pb2.SubmitRunRequest(spec=spec).SerializeToString()

    def cut_after_the_spec() -> Iterator[bytes]:
        yield request
        time.sleep(0.5)  # the link waits for the bundle's chunks meanwhile
        raise RuntimeError("the caller gives up")

    # Act
    with grpc.insecure_channel(link.control_address) as channel:
        submit = channel.stream_unary("/corolla.v1.Control/SubmitRun")
        with pytest.raises(grpc.RpcError):
            submit(cut_after_the_spec(), timeout=CALL_S)

    # Assert: the link noted it, or, where gRPC read the cancellation as the stream's
    # end, refused the submission without its bundle; it logged no error either way
    def from_the_link() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name.startswith("corolla")]

    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and not from_the_link():
        time.sleep(0.05)
    assert not [r for r in from_the_link() if r.levelno >= logging.ERROR]
