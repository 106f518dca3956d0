"""Accounts and roles on a link that requires them: each attack is refused with the right
status, a clear reason and a record in the audit log; what the roles allow works; a
change of account takes effect at once."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from corolla.core import AuthenticationError, ConfigError, PermissionDeniedError
from corolla.runtime import ControlClient, Link, LinkLimits
from corolla.runtime.link._accounts import LoginThrottle
from corolla.transport import (
    accounts_pb2,
    accounts_pb2_grpc,
    bearer_metadata,
    channel_options,
    control_pb2,
    control_pb2_grpc,
)
from corolla.trust import LinkPolicy, NodeKey, Role, TrustStore

APP = Path(__file__).resolve().parents[3] / "examples" / "quickstart-numpy"
ROOT_PASSWORD = "root-password"


def _start(state: Path, **settings: Any) -> Link:
    return Link(
        state,
        fleet_address="127.0.0.1:0",
        control_address="127.0.0.1:0",
        limits=LinkLimits(sweep_interval=0.05),
        auth=True,
        **settings,
    ).start()


def _with_admin(state: Path) -> None:
    with TrustStore(state / TrustStore.FILE) as trust:
        trust.add_account("root", Role.ADMIN, ROOT_PASSWORD)


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[Link]:
    """A link that requires accounts, with admin ``root`` and operator ``olga`` and
    viewer ``vic``."""
    state = tmp_path / "link"
    with TrustStore(state / TrustStore.FILE) as trust:
        trust.add_account("root", Role.ADMIN, ROOT_PASSWORD)
        trust.add_account("olga", Role.OPERATOR, "olga-password")
        trust.add_account("vic", Role.VIEWER, "vic-password")
    link = _start(state)
    try:
        yield link
    finally:
        link.stop()


def _login(link: Link, name: str, password: str | None = None) -> str:
    with ControlClient(link.control_address) as client:
        return client.accounts.login(name, password or f"{name}-password").token


def _client(link: Link, token: str | None) -> ControlClient:
    return ControlClient(link.control_address, token=token)


def _audit(link: Link, kind: str) -> list[dict[str, Any]]:
    lines = (link.state_dir / "audit.log").read_text("utf-8").splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def _raw_status(link: Link, call: str, request: Any, token: str | None) -> grpc.RpcError:
    """The error a raw gRPC call ends with (asserting it fails)."""
    with grpc.insecure_channel(link.control_address, options=channel_options()) as channel:
        stub: Any
        if call in ("ListRuns", "StopRun", "ListNodes"):
            stub = control_pb2_grpc.ControlStub(channel)
        else:
            stub = accounts_pb2_grpc.AccountsStub(channel)
        metadata = bearer_metadata(token) if token else None
        with pytest.raises(grpc.RpcError) as failed:
            getattr(stub, call)(request, metadata=metadata, timeout=30)
    return failed.value


# The attacks the issue names.


def test_a_call_without_a_token_is_refused_and_recorded(secured: Link) -> None:
    # Act
    raw = _raw_status(secured, "ListRuns", control_pb2.ListRunsRequest(), None)
    with _client(secured, None) as client, pytest.raises(AuthenticationError) as refused:
        client.list_runs()

    # Assert: UNAUTHENTICATED, the user told how to log in, the refusal in the audit log
    assert raw.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "no token" in str(refused.value)
    assert f"corolla login --link {secured.control_address}" in str(refused.value)
    denied = _audit(secured, "access.denied")
    assert denied and denied[-1]["data"]["method"] == "/corolla.v1.Control/ListRuns"
    assert "no token" in denied[-1]["data"]["why"]


def test_an_expired_token_is_refused(tmp_path: Path) -> None:
    # Arrange: tokens valid for 1 s
    _with_admin(tmp_path / "link")
    link = _start(tmp_path / "link", token_lifetime=1.0)
    try:
        token = _login(link, "root", ROOT_PASSWORD)
        with _client(link, token) as client:
            client.list_runs()  # valid at first

            # Act
            time.sleep(1.2)

            # Assert
            with pytest.raises(AuthenticationError, match="the token expired at"):
                client.list_runs()
        assert "expired" in _audit(link, "access.denied")[-1]["data"]["why"]
    finally:
        link.stop()


def test_a_token_of_another_federation_is_refused_naming_both(tmp_path: Path) -> None:
    # Arrange: a second link with the first one's trust store (so the same signing key),
    # serving another federation
    _with_admin(tmp_path / "alpha")
    alpha = _start(tmp_path / "alpha", federation="alpha")
    try:
        token = _login(alpha, "root", ROOT_PASSWORD)
        (tmp_path / "beta").mkdir(mode=0o700)
        shutil.copy(tmp_path / "alpha" / TrustStore.FILE, tmp_path / "beta" / TrustStore.FILE)
        beta = _start(tmp_path / "beta", federation="beta")
        try:
            # Act
            with _client(beta, token) as client, pytest.raises(AuthenticationError) as refused:
                client.list_nodes()

            # Assert
            assert "federation 'alpha'" in str(refused.value)
            assert "serves 'beta'" in str(refused.value)
            assert "federation 'alpha'" in _audit(beta, "access.denied")[-1]["data"]["why"]
        finally:
            beta.stop()
        with _client(alpha, token) as client:
            client.list_nodes()  # still valid where it was issued
    finally:
        alpha.stop()


def test_a_viewer_cannot_submit_a_run(secured: Link) -> None:
    # Arrange
    token = _login(secured, "vic")

    # Act
    with _client(secured, token) as client, pytest.raises(PermissionDeniedError) as refused:
        client.submit(APP)

    # Assert: PERMISSION_DENIED naming both roles; no run made; the refusal audited
    assert str(refused.value) == "vic is a viewer; SubmitRun needs operator"
    with _client(secured, token) as client:
        assert client.list_runs() == []
    denied = _audit(secured, "access.denied")[-1]
    assert denied["actor"] == "vic"
    assert denied["data"]["method"] == "/corolla.v1.Control/SubmitRun"


def test_an_operator_cannot_add_a_node(secured: Link, tmp_path: Path) -> None:
    # Arrange
    token = _login(secured, "olga")
    key, _ = NodeKey.load_or_create(tmp_path / "node")
    request = accounts_pb2.AddNodeKeyRequest(public_key=key.public_text)

    # Act
    raw = _raw_status(secured, "AddNodeKey", request, token)

    # Assert
    assert raw.code() is grpc.StatusCode.PERMISSION_DENIED
    assert raw.details() == "olga is an operator; AddNodeKey needs admin"
    with TrustStore(secured.state_dir / TrustStore.FILE) as trust:
        assert trust.node_keys() == []
    assert _audit(secured, "access.denied")[-1]["actor"] == "olga"


def test_a_forged_token_is_refused(secured: Link) -> None:
    token = _login(secured, "vic")
    header, payload, _ = token.split(".")

    raw = _raw_status(
        secured, "ListRuns", control_pb2.ListRunsRequest(), f"{header}.{payload}.AAAA"
    )

    assert raw.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "signature does not check out" in (raw.details() or "")


# What the roles allow.


def test_each_role_does_what_it_may(secured: Link, tmp_path: Path) -> None:
    key, _ = NodeKey.load_or_create(tmp_path / "node")
    with _client(secured, _login(secured, "vic")) as viewer:
        assert viewer.list_nodes() == []
        assert viewer.accounts.whoami().role == "viewer"
    with _client(secured, _login(secured, "olga")) as operator:
        run = operator.submit(APP, {"num-server-rounds": 1})
        assert operator.stop_run(run.run_id).run_id == run.run_id
    with _client(secured, _login(secured, "root", ROOT_PASSWORD)) as admin:
        registered = admin.accounts.add_node_key(key.public_text, "site-a")
        assert [k.public_key for k in admin.accounts.list_node_keys()] == [key.public_text]
        admin.accounts.remove_node_key(key.public_text)
        assert admin.accounts.list_node_keys() == []
    assert registered.added_by == "root"
    assert [r["actor"] for r in _audit(secured, "node_key.add")] == ["root"]
    assert [r["actor"] for r in _audit(secured, "node_key.remove")] == ["root"]


def test_a_removed_account_loses_access_at_once(secured: Link) -> None:
    # Arrange
    token = _login(secured, "olga")
    with _client(secured, _login(secured, "root", ROOT_PASSWORD)) as admin:
        # Act
        admin.accounts.remove_account("olga")

    # Assert: its unexpired token is refused at its next call
    with _client(secured, token) as client, pytest.raises(AuthenticationError) as refused:
        client.list_runs()
    assert "account 'olga' no longer exists" in str(refused.value)
    assert _audit(secured, "account.remove")[-1]["data"] == {"name": "olga"}


def test_a_demoted_account_loses_its_rights_at_once(secured: Link) -> None:
    token = _login(secured, "olga")
    with _client(secured, _login(secured, "root", ROOT_PASSWORD)) as admin:
        admin.accounts.set_role("olga", "viewer")

    with _client(secured, token) as client:
        client.list_runs()  # still a viewer
        with pytest.raises(PermissionDeniedError, match="olga is a viewer; StopRun needs operator"):
            client.stop_run(1)
    role = _audit(secured, "account.role")[-1]
    assert role["data"] == {"name": "olga", "role": "viewer", "was": "operator"}


def test_a_token_of_a_removed_account_does_not_serve_a_new_one_of_that_name(
    secured: Link,
) -> None:
    # Arrange: olga's token, then olga removed and another olga made (an admin)
    token = _login(secured, "olga")
    time.sleep(2.1)  # token times are whole seconds
    with _client(secured, _login(secured, "root", ROOT_PASSWORD)) as admin:
        admin.accounts.remove_account("olga")
        admin.accounts.add_account("olga", "admin", "new-olga-password")

    # Act / Assert
    with _client(secured, token) as client, pytest.raises(AuthenticationError):
        client.accounts.list_accounts()


# Logins.


def test_a_failed_login_is_recorded_without_the_password(secured: Link) -> None:
    with _client(secured, None) as client, pytest.raises(AuthenticationError) as refused:
        client.accounts.login("vic", "guess-number-one")

    assert "wrong account name or password" in str(refused.value)
    assert "corolla login --link" not in str(refused.value)
    failed = _audit(secured, "login.failed")[-1]
    assert failed["data"]["name"] == "vic"
    assert "guess-number-one" not in (secured.state_dir / "audit.log").read_text("utf-8")


def test_logins_are_refused_for_a_while_after_repeated_failures(secured: Link) -> None:
    # Arrange: five wrong guesses
    with _client(secured, None) as client:
        for guess in range(5):
            with pytest.raises(AuthenticationError):
                client.accounts.login("vic", f"guess-{guess}")

        # Act: the right password, at once
        with pytest.raises(AuthenticationError) as refused:
            client.accounts.login("vic", "vic-password")

        # Assert: refused without being checked; the other accounts are not affected
        assert "5 failed logins in a row for 'vic': try again in" in str(refused.value)
        assert client.accounts.login("olga", "olga-password").role == "operator"
    assert "try again" in _audit(secured, "login.failed")[-1]["data"]["reason"]


def test_the_login_delay_doubles_with_each_failure_and_ends_with_a_success() -> None:
    # Arrange
    now = [0.0]
    throttle = LoginThrottle(lambda: now[0], free=2, first_delay=1.0, longest=8.0)

    def refused_for() -> float:
        start = now[0]
        while True:
            try:
                throttle.check("vic")
            except AuthenticationError:
                now[0] += 0.5
                continue
            return now[0] - start

    # Act / Assert: free failures, then 1, 2, 4, 8, 8 seconds
    delays = []
    for _ in range(7):
        delays.append(refused_for())
        throttle.failed("vic")
    assert delays == [0.0, 0.0, 1.0, 2.0, 4.0, 8.0, 8.0]
    throttle.succeeded("vic")
    throttle.check("vic")


def test_an_account_changes_its_own_password_only_with_the_current_one(secured: Link) -> None:
    with _client(secured, _login(secured, "vic")) as vic:
        with pytest.raises(PermissionDeniedError, match="current password of vic"):
            vic.accounts.set_password("vic", "vic-new-password", "wrong")
        with pytest.raises(PermissionDeniedError, match="only an admin"):
            vic.accounts.set_password("olga", "olga-new-password")
        vic.accounts.set_password("vic", "vic-new-password", "vic-password")
    assert _login(secured, "vic", "vic-new-password")
    with _client(secured, _login(secured, "root", ROOT_PASSWORD)) as admin:
        admin.accounts.set_password("vic", "reset-by-root")
    assert _login(secured, "vic", "reset-by-root")
    assert [r["actor"] for r in _audit(secured, "account.password")] == ["vic", "root"]


def test_a_token_issued_before_a_password_change_is_void(secured: Link) -> None:
    # Arrange: a token of vic's (say, stolen), then vic's password reset by an admin
    stolen = _login(secured, "vic")
    time.sleep(2.1)  # token times are whole seconds
    with _client(secured, _login(secured, "root", ROOT_PASSWORD)) as admin:
        admin.accounts.set_password("vic", "reset-by-root")

    # Act / Assert: the old token is refused, saying why; a new login works
    with _client(secured, stolen) as thief, pytest.raises(AuthenticationError) as refused:
        thief.list_runs()
    assert "issued before its password changed: log in again" in str(refused.value)
    with _client(secured, _login(secured, "vic", "reset-by-root")) as vic:
        assert vic.list_runs() == []
    assert _audit(secured, "access.denied")[-1]["data"]["account"] == "vic"


# The link's policy.

ELSEWHERE = "ab" * 32  # the SHA-256 of some other app


def test_an_admin_puts_a_policy_in_force_at_once_and_the_link_keeps_it(
    secured: Link, tmp_path: Path
) -> None:
    # Arrange
    policy = f'[apps]\nallowed-bundles = ["{ELSEWHERE}"]\n'
    with _client(secured, _login(secured, "root", ROOT_PASSWORD)) as admin:
        assert admin.accounts.get_policy().source == "built in"

        # Act
        said = admin.accounts.set_policy(policy)

    # Assert: the next submission meets it, naming the rule and who set it
    assert (said.toml, said.set_by) == (policy, "root")
    operator = _client(secured, _login(secured, "olga"))
    with operator, pytest.raises(PermissionDeniedError) as refused:
        operator.submit(APP)
    assert "link policy (set by root, [apps] allowed-bundles)" in str(refused.value)
    assert "is not on the allow-list" in str(refused.value)
    assert _audit(secured, "policy.set")[-1]["actor"] == "root"

    # ... and a restart without --policy keeps it
    secured.stop()
    again = _start(secured.state_dir)
    try:
        with _client(again, _login(again, "vic")) as viewer:
            kept = viewer.accounts.get_policy()
        assert (kept.toml, kept.source, kept.set_by) == (policy, "set by root", "root")
    finally:
        again.stop()


def test_a_bad_policy_or_a_non_admin_changes_nothing(secured: Link) -> None:
    with _client(secured, _login(secured, "root", ROOT_PASSWORD)) as admin:
        admin.accounts.set_policy('[nodes]\nrequired-attributes = {region = "eu"}\n')
        with pytest.raises(ConfigError, match=r"set by root: unknown key 'allowed' in \[apps\]"):
            admin.accounts.set_policy("[apps]\nallowed = []\n")
        with pytest.raises(ConfigError, match="at most 1024 KiB"):
            admin.accounts.set_policy("#" * (1024 * 1024 + 1))
    with _client(secured, _login(secured, "olga")) as operator:
        with pytest.raises(PermissionDeniedError, match="SetPolicy needs admin"):
            operator.accounts.set_policy("")
        assert "region" in operator.accounts.get_policy().toml
    assert len(_audit(secured, "policy.set")) == 1


def test_a_link_started_with_a_policy_file_enforces_it_over_the_one_set_before(
    tmp_path: Path,
) -> None:
    state = tmp_path / "link"
    _with_admin(state)
    with TrustStore(state / TrustStore.FILE) as trust:
        trust.set_link_policy('[nodes]\nrequired-attributes = {region = "us"}\n', "root")
    written = tmp_path / "link-policy.toml"
    written.write_text('[nodes]\nrequired-attributes = {region = "eu"}\n')

    link = _start(state, policy=LinkPolicy.load(written))
    try:
        with _client(link, _login(link, "root", ROOT_PASSWORD)) as admin:
            kept = admin.accounts.get_policy()
    finally:
        link.stop()

    assert (kept.source, kept.set_by) == (str(written), f"corolla link --policy {written}")
    assert '"eu"' in kept.toml


def test_the_last_admin_stays(secured: Link) -> None:
    with _client(secured, _login(secured, "root", ROOT_PASSWORD)) as admin:
        with pytest.raises(ConfigError, match="last admin"):
            admin.accounts.remove_account("root")
        with pytest.raises(ConfigError, match="last admin"):
            admin.accounts.set_role("root", "viewer")
        with pytest.raises(ConfigError, match="no role 'root'"):
            admin.accounts.add_account("eve", "root", "eve-password")


def test_without_auth_every_call_is_allowed_to_the_anonymous_caller(link: Link) -> None:
    with ControlClient(link.control_address) as client:
        me = client.accounts.whoami()
        client.list_runs()

    assert (me.name, me.role, me.auth) == ("anonymous", "admin", False)
    assert _audit(link, "access.denied") == []


@pytest.mark.parametrize("method", ["/flwr.proto.Control/StartRun", "/corolla.v1.Control/Nothing"])
def test_calls_the_link_does_not_serve_are_answered_as_without_auth(
    secured: Link, method: str
) -> None:
    # A Flower CLI still learns which corolla command to use; an unknown method is unknown.
    with (
        grpc.insecure_channel(secured.control_address) as channel,
        pytest.raises(grpc.RpcError) as refused,
    ):
        channel.unary_unary(method)(b"", timeout=10)

    assert refused.value.code() is grpc.StatusCode.UNIMPLEMENTED
    assert _audit(secured, "access.denied") == []


def test_a_flood_of_refused_calls_and_logins_is_recorded_twenty_a_second_not_call_by_call(
    secured: Link,
) -> None:
    # Arrange: every refusal was written and fsynced, for callers who need no account
    calls = 100
    before = (secured.state_dir / "audit.log").stat().st_size
    started = time.monotonic()

    # Act
    with grpc.insecure_channel(secured.control_address, options=channel_options()) as channel:
        stub = accounts_pb2_grpc.AccountsStub(channel)
        for i in range(calls):
            with pytest.raises(grpc.RpcError):
                stub.WhoAmI(accounts_pb2.WhoAmIRequest(), metadata=bearer_metadata(f"x{i}"))
            with pytest.raises(grpc.RpcError):  # refused at once after 5 failures
                stub.Login(accounts_pb2.LoginRequest(name="root", password="guess"))
    seconds = time.monotonic() - started

    # Assert: at most 20 records a second, the last of each second saying more came
    records = _audit(secured, "access.denied") + _audit(secured, "login.failed")
    assert len(records) <= 20 * (int(seconds) + 2) < 2 * calls
    assert any(r["data"].get("note", "").startswith("more refusals") for r in records)
    grown = (secured.state_dir / "audit.log").stat().st_size - before
    assert grown < len(records) * 1024
