"""The access table covers every method served on the control port, and the roles it
names are the ones the issue sets out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from corolla.core import PermissionDeniedError
from corolla.runtime.link import LinkResources
from corolla.runtime.link._access import ANONYMOUS, REQUIRED_ROLES, AccessControl
from corolla.state import MemoryBlobStore, SqliteLinkState
from corolla.transport import accounts_pb2, bearer_metadata, control_pb2, serverappio_pb2
from corolla.trust import Role, Tokens

#: The services the link serves on its control port (see Link.start).
CONTROL_PORT_SERVICES = [
    control_pb2.DESCRIPTOR.services_by_name["Control"],
    serverappio_pb2.DESCRIPTOR.services_by_name["RunArtifacts"],
    accounts_pb2.DESCRIPTOR.services_by_name["Accounts"],
]


def _paths() -> set[str]:
    return {
        f"/{service.full_name}/{method.name}"
        for service in CONTROL_PORT_SERVICES
        for method in service.methods
    }


def test_every_method_on_the_control_port_has_an_access_rule() -> None:
    assert _paths() <= REQUIRED_ROLES.keys()


def test_the_access_table_names_no_method_that_is_not_served() -> None:
    assert REQUIRED_ROLES.keys() <= _paths()


@pytest.mark.parametrize(
    ("method", "role"),
    [
        ("/corolla.v1.Control/ListRuns", Role.VIEWER),
        ("/corolla.v1.Control/GetRun", Role.VIEWER),
        ("/corolla.v1.Control/StreamEvents", Role.VIEWER),
        ("/corolla.v1.Control/ListNodes", Role.VIEWER),
        ("/corolla.v1.Control/GetRunResult", Role.VIEWER),
        ("/corolla.v1.RunArtifacts/PullArrays", Role.VIEWER),
        ("/corolla.v1.Accounts/WhoAmI", Role.VIEWER),
        ("/corolla.v1.Control/SubmitRun", Role.OPERATOR),
        ("/corolla.v1.Control/StopRun", Role.OPERATOR),
        ("/corolla.v1.Accounts/AddAccount", Role.ADMIN),
        ("/corolla.v1.Accounts/RemoveAccount", Role.ADMIN),
        ("/corolla.v1.Accounts/SetRole", Role.ADMIN),
        ("/corolla.v1.Accounts/ListAccounts", Role.ADMIN),
        ("/corolla.v1.Accounts/AddNodeKey", Role.ADMIN),
        ("/corolla.v1.Accounts/RemoveNodeKey", Role.ADMIN),
        ("/corolla.v1.Accounts/ListNodeKeys", Role.ADMIN),
        ("/corolla.v1.Accounts/Login", None),
    ],
)
def test_each_method_needs_the_role_the_issue_gives_it(method: str, role: Role | None) -> None:
    assert REQUIRED_ROLES[method] is role


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[LinkResources]:
    state = SqliteLinkState(":memory:")
    shared = LinkResources.create(state, MemoryBlobStore(), tmp_path / "apps", auth=True)
    try:
        yield shared
    finally:
        shared.audit.close()
        shared.trust.close()
        state.close()


def test_a_method_without_a_rule_is_refused_to_everyone(shared: LinkResources) -> None:
    # Arrange: an admin's valid token
    shared.trust.add_account("root", Role.ADMIN, "root-password")
    tokens = Tokens(shared.trust.secret("token-key"), shared.federation)
    token, _ = tokens.issue("root", Role.ADMIN)
    access = AccessControl(shared, tokens)

    # Act / Assert: even an admin may not call what the table does not name
    with pytest.raises(PermissionDeniedError, match="DropEverything is open to no role"):
        access.admit("/corolla.v1.Control/DropEverything", bearer_metadata(token))
    assert access.admit("/corolla.v1.Control/ListRuns", bearer_metadata(token)).name == "root"


def test_without_auth_every_caller_is_the_anonymous_admin(tmp_path: Path) -> None:
    state = SqliteLinkState(":memory:")
    shared = LinkResources.create(state, MemoryBlobStore(), tmp_path / "apps")
    try:
        access = AccessControl(shared, Tokens(shared.trust.secret("token-key"), "default"))

        caller = access.admit("/corolla.v1.Accounts/Login", ())

        assert caller == ANONYMOUS
        assert not access.enabled
    finally:
        shared.audit.close()
        shared.trust.close()
        state.close()
