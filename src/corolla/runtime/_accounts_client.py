"""The client's end of the link's Accounts service, and the token every call carries.

:func:`with_token` wraps a channel so that every call on it, unary or streaming,
carries ``authorization: Bearer <token>``: a Control client cannot forget it on one call.
:class:`AccountsClient` logs in and manages accounts and node keys; a
:class:`~corolla.runtime.ControlClient` hands one out as ``client.accounts``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, NamedTuple, Protocol

import grpc

from corolla.transport import AUTHORIZATION_KEY, accounts_pb2, accounts_pb2_grpc

__all__ = ["AccountsClient", "Login", "with_token"]


class _CallDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None
    compression: Any


class _BearerToken(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds the token to the metadata of every call."""

    def __init__(self, token: str) -> None:
        self._entry = (AUTHORIZATION_KEY, f"Bearer {token}")

    def _details(self, details: Any) -> _CallDetails:
        metadata = [(k, v) for k, v in (details.metadata or ()) if k.lower() != AUTHORIZATION_KEY]
        metadata.append(self._entry)
        return _CallDetails(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


def with_token(channel: grpc.Channel, token: str | None) -> grpc.Channel:
    """``channel``, every call on it carrying ``token`` (unchanged if None or empty)."""
    if not token:
        return channel
    return grpc.intercept_channel(channel, _BearerToken(token))


@dataclasses.dataclass(frozen=True)
class Login:
    """What a successful login returns."""

    token: str
    name: str
    role: str
    federation: str
    #: Seconds since the Unix epoch.
    expires_at: float


class _Calling(Protocol):
    def __call__(self, *, login_hint: bool = True) -> contextlib.AbstractContextManager[None]: ...


class AccountsClient:
    """Calls the Accounts service of a link on ``channel``; ``calling`` translates the
    failures of each call (the :class:`ControlClient`'s own translation; for Login,
    without telling to log in)."""

    def __init__(self, channel: grpc.Channel, calling: _Calling) -> None:
        self._stub = accounts_pb2_grpc.AccountsStub(channel)
        self._calling = calling

    def login(self, name: str, password: str) -> Login:
        """A token for account ``name``.

        Raises
        ------
        AuthenticationError
            If the name or password is wrong, or the name is refused for a while after
            failed logins.
        CorollaError
            If the link cannot be reached.
        """
        with self._calling(login_hint=False):
            answer = self._stub.Login(accounts_pb2.LoginRequest(name=name, password=password))
        return Login(answer.token, answer.name, answer.role, answer.federation, answer.expires_at)

    def whoami(self) -> accounts_pb2.WhoAmIResponse:
        """The account the client's token names, its role and the link's federation.

        Raises
        ------
        CorollaError
            If the token is refused or the link cannot be reached.
        """
        with self._calling():
            return self._stub.WhoAmI(accounts_pb2.WhoAmIRequest())

    def list_accounts(self) -> list[accounts_pb2.Account]:
        """Every account of the link, by name (admin).

        Raises
        ------
        CorollaError
            If the caller is no admin or the link cannot be reached.
        """
        with self._calling():
            return list(self._stub.ListAccounts(accounts_pb2.ListAccountsRequest()).accounts)

    def add_account(self, name: str, role: str, password: str) -> accounts_pb2.Account:
        """Create an account (admin).

        Raises
        ------
        CorollaError
            If the name is taken or malformed, the role unknown, the password too short,
            or the caller no admin.
        """
        request = accounts_pb2.AddAccountRequest(name=name, role=role, password=password)
        with self._calling():
            return self._stub.AddAccount(request).account

    def remove_account(self, name: str) -> None:
        """Delete an account (admin); the last admin stays.

        Raises
        ------
        CorollaError
            If there is no such account, it is the last admin, or the caller no admin.
        """
        with self._calling():
            self._stub.RemoveAccount(accounts_pb2.RemoveAccountRequest(name=name))

    def set_role(self, name: str, role: str) -> accounts_pb2.Account:
        """Change an account's role (admin).

        Raises
        ------
        CorollaError
            If there is no such account or role, it is the last admin losing the role, or
            the caller no admin.
        """
        with self._calling():
            return self._stub.SetRole(accounts_pb2.SetRoleRequest(name=name, role=role)).account

    def set_password(self, name: str, new_password: str, current_password: str = "") -> None:
        """Change a password: one's own with ``current_password``, another's as an admin.

        Raises
        ------
        CorollaError
            If the current password is wrong, the new one too short, or the caller may
            not change that account's.
        """
        request = accounts_pb2.SetPasswordRequest(
            name=name, new_password=new_password, current_password=current_password
        )
        with self._calling():
            self._stub.SetPassword(request)

    def list_node_keys(self) -> list[accounts_pb2.NodeKey]:
        """The node keys the link admits, oldest first (admin).

        Raises
        ------
        CorollaError
            If the caller is no admin or the link cannot be reached.
        """
        with self._calling():
            return list(self._stub.ListNodeKeys(accounts_pb2.ListNodeKeysRequest()).keys)

    def add_node_key(self, public_key: str, name: str = "") -> accounts_pb2.NodeKey:
        """Register a node's public key (``ed25519:...``, as ``corolla node keys`` prints
        it) (admin).

        Raises
        ------
        CorollaError
            If the key is malformed or the caller no admin.
        """
        request = accounts_pb2.AddNodeKeyRequest(public_key=public_key, name=name)
        with self._calling():
            return self._stub.AddNodeKey(request).key

    def remove_node_key(self, public_key: str) -> None:
        """Unregister a node key: its node is refused from its next call on (admin).

        Raises
        ------
        CorollaError
            If the key is not registered or the caller no admin.
        """
        with self._calling():
            self._stub.RemoveNodeKey(accounts_pb2.RemoveNodeKeyRequest(public_key=public_key))

    def get_policy(self) -> accounts_pb2.PolicyResponse:
        """The link's policy in force, as TOML, with where it comes from (viewer)."""
        with self._calling():
            return self._stub.GetPolicy(accounts_pb2.GetPolicyRequest())

    def set_policy(self, toml: str) -> accounts_pb2.PolicyResponse:
        """Put the policy in TOML ``toml`` in force at once, in place of the link's (admin);
        the link keeps it across restarts.

        Raises
        ------
        CorollaError
            If the policy does not read (the error names the key and what is allowed), or
            the caller is no admin; the policy in force is then unchanged.
        """
        with self._calling():
            return self._stub.SetPolicy(accounts_pb2.SetPolicyRequest(toml=toml))
