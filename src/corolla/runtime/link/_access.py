"""Who may call what on the link's control port, checked in one place.

:data:`REQUIRED_ROLES` names, for every method of every service on the control port,
the least role that may call it (None: anyone, for Login). The control server runs
every call through :class:`AccessControl`'s interceptor, which, when the link requires
accounts (``corolla link --auth``):

- reads the call's ``authorization: Bearer <token>`` and checks the token
  (:class:`~corolla.trust.Tokens`): a missing, expired, foreign or forged one ends the
  call with ``UNAUTHENTICATED``;
- reads the account's current role in the trust store, not the one written in the token,
  so that an account removed or demoted loses its rights at once, and a token issued
  before the account's password last changed is void (the role is cached for a second;
  the link's own changes forget it at once);
- ends a call the role does not allow with ``PERMISSION_DENIED``, naming both roles;
- records each refusal in the audit log (``access.denied``), at most
  :data:`~corolla.runtime._audit.REFUSALS_PER_S` a second one by one (``refusals``: a
  flood of calls with bad tokens needs no account);
- refuses any method missing from the table: a service added to the port without its
  rules is closed, not open.

Handlers read the caller with :func:`caller_of` or :func:`caller_name`. Without
``--auth`` every call is let through as the anonymous caller, as before accounts existed.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable
from typing import Any

import grpc

from corolla.core import AuthenticationError, CorollaError, PermissionDeniedError
from corolla.transport import abort, bearer_token
from corolla.trust import Role, TokenClaims, Tokens

from .._audit import RecordBudget
from ._flower_calls import FLOWER_SERVICES
from ._resources import LinkResources

__all__ = [
    "ANONYMOUS",
    "REQUIRED_ROLES",
    "AccessControl",
    "Caller",
    "caller_name",
    "caller_of",
]

_CONTROL = "/corolla.v1.Control/"
_ARTIFACTS = "/corolla.v1.RunArtifacts/"
_ACCOUNTS = "/corolla.v1.Accounts/"

#: The least role each method of the control port needs; None: anyone may call it.
REQUIRED_ROLES: dict[str, Role | None] = {
    _CONTROL + "SubmitRun": Role.OPERATOR,
    _CONTROL + "ListRuns": Role.VIEWER,
    _CONTROL + "GetRun": Role.VIEWER,
    _CONTROL + "StopRun": Role.OPERATOR,
    _CONTROL + "StreamEvents": Role.VIEWER,
    _CONTROL + "ListNodes": Role.VIEWER,
    _CONTROL + "GetRunResult": Role.VIEWER,
    _ARTIFACTS + "PullArrays": Role.VIEWER,
    _ACCOUNTS + "Login": None,
    _ACCOUNTS + "WhoAmI": Role.VIEWER,
    # Any account for its own password (the handler asks for the current one); only an
    # admin for another account's.
    _ACCOUNTS + "SetPassword": Role.VIEWER,
    _ACCOUNTS + "ListAccounts": Role.ADMIN,
    _ACCOUNTS + "AddAccount": Role.ADMIN,
    _ACCOUNTS + "RemoveAccount": Role.ADMIN,
    _ACCOUNTS + "SetRole": Role.ADMIN,
    _ACCOUNTS + "ListNodeKeys": Role.ADMIN,
    _ACCOUNTS + "AddNodeKey": Role.ADMIN,
    _ACCOUNTS + "RemoveNodeKey": Role.ADMIN,
    _ACCOUNTS + "GetPolicy": Role.VIEWER,
    _ACCOUNTS + "SetPolicy": Role.ADMIN,
}

#: Seconds an account's role is read from memory before the trust store is asked again.
ROLE_CACHE_S = 1.0
#: Seconds a token may seem issued before its account was created (clock granularity:
#: a token's times are whole seconds).
_ISSUE_SLACK_S = 1.0


@dataclasses.dataclass(frozen=True)
class Caller:
    """Who makes a call: an account with its current role, or the anonymous caller of a
    link without accounts."""

    name: str
    role: Role
    #: The token the call presented; None for the anonymous caller and for Login.
    token: TokenClaims | None = None


#: The caller of every call on a link without ``--auth``: it may do everything.
ANONYMOUS = Caller("anonymous", Role.ADMIN)
#: The caller of Login on a link with ``--auth``: not known until the password checks out.
_LOGGING_IN = Caller("anonymous", Role.VIEWER)
_CALLER_ATTRIBUTE = "_corolla_caller"


def caller_of(context: grpc.ServicerContext) -> Caller:
    """Who makes the call of ``context`` (:data:`ANONYMOUS` on a link without accounts)."""
    caller = getattr(context, _CALLER_ATTRIBUTE, None)
    return caller if isinstance(caller, Caller) else ANONYMOUS


def caller_name(context: grpc.ServicerContext) -> str:
    """The account name of the call of ``context`` (``"anonymous"`` without accounts), for
    audit records and what a run says of who submitted it."""
    return caller_of(context).name


def _short(method: str) -> str:
    return method.rpartition("/")[2] or method


class AccessControl:
    """Checks the callers of the link's control port against :data:`REQUIRED_ROLES`.

    Parameters
    ----------
    shared
        The link's resources: its trust store (accounts), audit log, clock, and whether
        it requires accounts (``auth``).
    tokens
        Checks the tokens calls present (and issues them at Login).
    """

    def __init__(self, shared: LinkResources, tokens: Tokens) -> None:
        self._shared = shared
        self.tokens = tokens
        self._lock = threading.Lock()
        # name -> (role or None for no such account, its creation time, the time its
        # tokens are valid from, when read)
        self._roles: dict[str, tuple[Role | None, float, float, float]] = {}
        #: How many refusals (and failed logins) are recorded one by one a second.
        self.refusals = RecordBudget(shared.clock.monotonic)

    @property
    def enabled(self) -> bool:
        """Whether calls must present a token."""
        return self._shared.auth

    def forget(self, name: str) -> None:
        """Read account ``name``'s role from the trust store at its next call (it changed)."""
        with self._lock:
            self._roles.pop(name, None)

    def _current(self, name: str) -> tuple[Role | None, float, float]:
        """Account ``name``'s role (None: no such account), its creation time and the time
        its tokens are valid from."""
        now = self._shared.clock.monotonic()
        with self._lock:
            cached = self._roles.get(name)
            if cached is not None and now - cached[3] < ROLE_CACHE_S:
                return cached[:3]
        account = self._shared.trust.account(name)
        current = (
            (None, 0.0, 0.0)
            if account is None
            else (account.role, account.created_at, account.tokens_since)
        )
        with self._lock:
            if len(self._roles) > 10_000:  # tokens name only real accounts: a bound, no more
                self._roles.clear()
            self._roles[name] = (*current, now)
        return current

    def admit(
        self,
        method: str,
        metadata: Iterable[tuple[str, str | bytes]] | None,
        peer: str = "",
    ) -> Caller:
        """The caller of ``method``, if its token checks out and its role allows the call;
        a refusal is recorded in the audit log (``access.denied``, within
        :attr:`refusals`) before it is raised.

        Raises
        ------
        AuthenticationError
            If the token is missing, malformed, forged, expired, for another federation,
            or names an account that no longer exists.
        PermissionDeniedError
            If the account's role does not allow ``method``, or the method has no rule.
        """
        account = ""
        try:
            if method not in REQUIRED_ROLES:
                raise PermissionDeniedError(f"{_short(method)} is open to no role on this link")
            required = REQUIRED_ROLES[method]
            if required is None:
                return ANONYMOUS if not self.enabled else _LOGGING_IN
            claims = self.tokens.check(bearer_token(metadata))
            account = claims.account
            role, created, since = self._current(account)
            if role is None or claims.issued_at + _ISSUE_SLACK_S < created:
                raise AuthenticationError(
                    f"account {account!r} no longer exists on this link: log in with "
                    "another account"
                )
            if claims.issued_at + _ISSUE_SLACK_S < since:
                raise AuthenticationError(
                    f"the token of {account} was issued before its password changed: log in again"
                )
            if not role.allows(required):
                raise PermissionDeniedError(
                    f"{account} is {_article(role)} {role.value}; {_short(method)} needs "
                    f"{required.value}"
                )
            return Caller(account, role, claims)
        except (AuthenticationError, PermissionDeniedError) as exc:
            extra = self.refusals.take()
            if extra is not None:
                self._shared.audit.record(
                    "access.denied",
                    account,
                    {"method": method, "account": account, "why": str(exc), "peer": peer, **extra},
                )
            raise

    def interceptor(self) -> grpc.ServerInterceptor:
        """The interceptor to give the control server."""
        return _AccessInterceptor(self)


def _article(role: Role) -> str:
    return "an" if role.value[0] in "aeiou" else "a"


_Behavior = Callable[[Any, grpc.ServicerContext], Any]


class _AccessInterceptor(grpc.ServerInterceptor):
    def __init__(self, access: AccessControl) -> None:
        self._access = access

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        method: str = getattr(handler_call_details, "method", "") or ""
        if handler is None or not self._access.enabled or method.startswith(FLOWER_SERVICES):
            return handler  # unknown methods are UNIMPLEMENTED; Flower's only refused
        changes = {
            kind: self._guarded(method, behavior)
            for kind in ("unary_unary", "unary_stream", "stream_unary", "stream_stream")
            if (behavior := getattr(handler, kind, None)) is not None
        }
        # gRPC's method handlers are named tuples.
        return handler._replace(**changes)  # type: ignore[attr-defined,no-any-return]

    def _guarded(self, method: str, behavior: _Behavior) -> _Behavior:
        access = self._access

        def guarded(request: Any, context: grpc.ServicerContext) -> Any:
            try:
                caller = access.admit(method, context.invocation_metadata(), context.peer())
            except (AuthenticationError, PermissionDeniedError) as exc:
                refusal: CorollaError = exc
            else:
                setattr(context, _CALLER_ATTRIBUTE, caller)
                return behavior(request, context)
            # Outside the except block: see _handlers on what a live exception holds.
            abort(context, refusal)

        return guarded
