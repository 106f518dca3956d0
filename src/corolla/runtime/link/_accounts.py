"""The Accounts service: logins, accounts and the node keys the link admits, on the
link's control address.

Who may call what is decided before a handler runs (``_access``); the handlers here
check only what depends on the request: changing another account's password needs an
admin, changing one's own needs the current password. Every change is recorded in the
audit log with the account that made it (``account.add``, ``account.remove``,
``account.role``, ``account.password``, ``node_key.add``, ``node_key.remove``), and so is
every login (``login``, ``login.failed``: the name tried and why, never a password).

Logins are throttled per account name (:class:`LoginThrottle`): after a few failures in
a row, the name is refused for a delay that doubles with each further failure, without
its password being checked, so that guessing passwords takes years instead of hours.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import grpc

from corolla.core import AuthenticationError, ConfigError, PermissionDeniedError
from corolla.transport import accounts_pb2, accounts_pb2_grpc
from corolla.trust import (
    Account,
    LinkPolicy,
    RegisteredKey,
    Role,
    StoredPolicy,
    public_key_from_text,
    public_key_text,
)

from ._access import AccessControl, Caller, caller_of
from ._admission import MAX_POLICY_BYTES, audit_policy
from ._handlers import servicer_errors
from ._resources import LinkResources

__all__ = ["AccountsServicer", "LoginThrottle"]

#: Longest password a login hashes (scrypt's work grows with it).
_MAX_PASSWORD_CHARS = 1024
_MAX_NAME_CHARS = 64


class LoginThrottle:
    """Failed logins per account name, and how long each name is refused.

    Parameters
    ----------
    clock
        Monotonic seconds.
    free
        Failures in a row allowed before the name is refused.
    first_delay
        Seconds the name is refused after failure number ``free``; each further failure
        doubles it.
    longest
        The longest delay, in seconds.
    names
        How many names are remembered at most (the oldest are forgotten first).
    """

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        free: int = 5,
        first_delay: float = 1.0,
        longest: float = 900.0,
        names: int = 10_000,
    ) -> None:
        self._clock = clock
        self._free = free
        self._first_delay = first_delay
        self._longest = longest
        self._names = names
        self._lock = threading.Lock()
        # name -> (failures in a row, refused until)
        self._failures: dict[str, tuple[int, float]] = {}

    def check(self, name: str) -> None:
        """Let a login for ``name`` be tried.

        Raises
        ------
        AuthenticationError
            If ``name`` is refused for now, saying for how long.
        """
        with self._lock:
            failures, until = self._failures.get(name, (0, 0.0))
        wait = until - self._clock()
        if wait > 0:
            raise AuthenticationError(
                f"{failures} failed logins in a row for {name!r}: try again in "
                f"{max(1, round(wait))} s"
            )

    def failed(self, name: str) -> None:
        """Count a failed login for ``name``."""
        with self._lock:
            failures, _ = self._failures.pop(name, (0, 0.0))
            failures += 1
            until = 0.0
            if failures >= self._free:
                delay = self._first_delay * 2.0 ** min(failures - self._free, 32)
                until = self._clock() + min(delay, self._longest)
            self._failures[name] = (failures, until)
            while len(self._failures) > self._names:
                del self._failures[next(iter(self._failures))]

    def succeeded(self, name: str) -> None:
        """Forget ``name``'s failures."""
        with self._lock:
            self._failures.pop(name, None)


def _account(account: Account) -> accounts_pb2.Account:
    return accounts_pb2.Account(
        name=account.name, role=account.role.value, created_at=account.created_at
    )


def _key(key: RegisteredKey) -> accounts_pb2.NodeKey:
    return accounts_pb2.NodeKey(
        public_key=key.public_key, name=key.name, added_at=key.added_at, added_by=key.added_by
    )


def _policy(policy: LinkPolicy, stored: StoredPolicy | None) -> accounts_pb2.PolicyResponse:
    """The policy in force, with when and by whom it was set (when it is the one kept)."""
    if not policy.text:
        return accounts_pb2.PolicyResponse(source=policy.path or "built in")
    kept = stored is not None and stored.text == policy.text
    return accounts_pb2.PolicyResponse(
        toml=policy.text,
        source=policy.path,
        set_at=stored.set_at if kept and stored is not None else 0.0,
        set_by=stored.set_by if kept and stored is not None else "",
    )


def _shown_name(name: str) -> str:
    """``name`` as the audit log keeps a name someone tried: a bounded length."""
    return name if len(name) <= _MAX_NAME_CHARS else name[:_MAX_NAME_CHARS] + "..."


class AccountsServicer(accounts_pb2_grpc.AccountsServicer):
    """Logins, accounts and node keys (see the module's docstring)."""

    def __init__(
        self, shared: LinkResources, access: AccessControl, throttle: LoginThrottle | None = None
    ) -> None:
        self._shared = shared
        self._access = access
        self._throttle = throttle or LoginThrottle(shared.clock.monotonic)
        # One change of the policy at a time: the store and the link agree on the last.
        self._policy_lock = threading.Lock()

    def redact(self, text: str) -> str:
        return self._shared.redact(text)

    def _record(self, kind: str, caller: Caller, data: dict[str, object]) -> None:
        self._shared.audit.record(kind, caller.name, data)

    def _login_failed(self, name: str, reason: str, peer: str) -> None:
        extra = self._access.refusals.take()  # a flood of logins is counted, not written
        if extra is None:
            return
        self._shared.audit.record(
            "login.failed",
            "",
            {"name": _shown_name(name), "reason": reason, "peer": peer, **extra},
        )

    def check_password(self, name: str, password: str, peer: str) -> Account:
        """The account ``name``, if ``password`` is its password: throttled per name, and
        a failure recorded in the audit log (``login.failed``, with ``peer``), whichever
        way the login came (the Accounts API or the dashboard).

        Raises
        ------
        AuthenticationError
            If the name is refused for now, or the name or password is wrong.
        """
        try:
            self._throttle.check(name)
        except AuthenticationError as exc:
            self._login_failed(name, str(exc), peer)
            raise
        account = None
        if len(name) <= _MAX_NAME_CHARS and len(password) <= _MAX_PASSWORD_CHARS:
            account = self._shared.trust.check_password(name, password)
        if account is None:
            if len(name) <= _MAX_NAME_CHARS:
                self._throttle.failed(name)
            self._login_failed(name, "wrong account name or password", peer)
            raise AuthenticationError(f"wrong account name or password for {_shown_name(name)!r}")
        self._throttle.succeeded(name)
        return account

    @servicer_errors
    def Login(
        self, request: accounts_pb2.LoginRequest, context: grpc.ServicerContext
    ) -> accounts_pb2.LoginResponse:
        account = self.check_password(request.name, request.password, context.peer())
        token, claims = self._access.tokens.issue(account.name, account.role)
        self._shared.audit.record(
            "login",
            account.name,
            {
                "role": account.role.value,
                "token": claims.token_id,
                "expires_at": claims.expires_at,
                "peer": context.peer(),
            },
        )
        return accounts_pb2.LoginResponse(
            token=token,
            expires_at=claims.expires_at,
            role=account.role.value,
            federation=claims.federation,
            name=account.name,
        )

    @servicer_errors
    def WhoAmI(
        self, request: accounts_pb2.WhoAmIRequest, context: grpc.ServicerContext
    ) -> accounts_pb2.WhoAmIResponse:
        caller = caller_of(context)
        return accounts_pb2.WhoAmIResponse(
            name=caller.name,
            role=caller.role.value,
            federation=self._shared.federation,
            expires_at=caller.token.expires_at if caller.token is not None else 0.0,
            auth=self._access.enabled,
        )

    @servicer_errors
    def ListAccounts(
        self, request: accounts_pb2.ListAccountsRequest, context: grpc.ServicerContext
    ) -> accounts_pb2.ListAccountsResponse:
        accounts = self._shared.trust.accounts()
        return accounts_pb2.ListAccountsResponse(accounts=[_account(a) for a in accounts])

    @servicer_errors
    def AddAccount(
        self, request: accounts_pb2.AddAccountRequest, context: grpc.ServicerContext
    ) -> accounts_pb2.AccountResponse:
        role = Role.parse(request.role)
        account = self._shared.trust.add_account(request.name, role, request.password)
        self._access.forget(account.name)
        self._record("account.add", caller_of(context), {"name": account.name, "role": role.value})
        return accounts_pb2.AccountResponse(account=_account(account))

    @servicer_errors
    def RemoveAccount(
        self, request: accounts_pb2.RemoveAccountRequest, context: grpc.ServicerContext
    ) -> accounts_pb2.RemoveAccountResponse:
        self._shared.trust.remove_account(request.name)
        self._access.forget(request.name)
        self._record("account.remove", caller_of(context), {"name": request.name})
        return accounts_pb2.RemoveAccountResponse()

    @servicer_errors
    def SetRole(
        self, request: accounts_pb2.SetRoleRequest, context: grpc.ServicerContext
    ) -> accounts_pb2.AccountResponse:
        role = Role.parse(request.role)
        before = self._shared.trust.account(request.name)
        account = self._shared.trust.set_role(request.name, role)
        self._access.forget(request.name)
        was = before.role.value if before is not None else ""
        self._record(
            "account.role",
            caller_of(context),
            {"name": request.name, "role": role.value, "was": was},
        )
        return accounts_pb2.AccountResponse(account=_account(account))

    @servicer_errors
    def SetPassword(
        self, request: accounts_pb2.SetPasswordRequest, context: grpc.ServicerContext
    ) -> accounts_pb2.SetPasswordResponse:
        caller = caller_of(context)
        target = request.name or caller.name
        if caller.token is not None and target == caller.name:
            # A stolen token alone does not take the account over.
            try:
                self.check_password(target, request.current_password, context.peer())
            except AuthenticationError as exc:
                raise PermissionDeniedError(
                    f"the current password of {target} does not check out ({exc})"
                ) from None
        elif not caller.role.allows(Role.ADMIN):
            denied = PermissionDeniedError(
                f"{caller.name} is not an admin; only an admin changes another account's password"
            )
            self._shared.audit.record(
                "access.denied",
                caller.name,
                {"method": "SetPassword", "account": caller.name, "why": str(denied)},
            )
            raise denied
        if not target or self._shared.trust.account(target) is None:
            raise ConfigError(f"no account {target!r}")
        self._shared.trust.set_password(target, request.new_password)
        self._access.forget(target)
        self._record("account.password", caller, {"name": target})
        return accounts_pb2.SetPasswordResponse()

    @servicer_errors
    def ListNodeKeys(
        self, request: accounts_pb2.ListNodeKeysRequest, context: grpc.ServicerContext
    ) -> accounts_pb2.ListNodeKeysResponse:
        return accounts_pb2.ListNodeKeysResponse(
            keys=[_key(k) for k in self._shared.trust.node_keys()]
        )

    @servicer_errors
    def AddNodeKey(
        self, request: accounts_pb2.AddNodeKeyRequest, context: grpc.ServicerContext
    ) -> accounts_pb2.NodeKeyResponse:
        caller = caller_of(context)
        key = self._shared.trust.add_node_key(
            request.public_key, name=request.name, added_by=caller.name
        )
        self._record("node_key.add", caller, {"public_key": key.public_key, "name": key.name})
        return accounts_pb2.NodeKeyResponse(key=_key(key))

    @servicer_errors
    def RemoveNodeKey(
        self, request: accounts_pb2.RemoveNodeKeyRequest, context: grpc.ServicerContext
    ) -> accounts_pb2.RemoveNodeKeyResponse:
        text = public_key_text(public_key_from_text(request.public_key))
        self._shared.trust.remove_node_key(text)
        self._record("node_key.remove", caller_of(context), {"public_key": text})
        return accounts_pb2.RemoveNodeKeyResponse()

    @servicer_errors
    def GetPolicy(
        self, request: accounts_pb2.GetPolicyRequest, context: grpc.ServicerContext
    ) -> accounts_pb2.PolicyResponse:
        return _policy(self._shared.policy, self._shared.trust.link_policy())

    @servicer_errors
    def SetPolicy(
        self, request: accounts_pb2.SetPolicyRequest, context: grpc.ServicerContext
    ) -> accounts_pb2.PolicyResponse:
        caller = caller_of(context)
        text = request.toml
        if len(text.encode("utf-8")) > MAX_POLICY_BYTES:
            raise ConfigError(
                f"a link policy is at most {MAX_POLICY_BYTES // 1024} KiB of TOML, got "
                f"{len(text.encode('utf-8')) // 1024} KiB"
            )
        # Checked whole before anything changes: a bad policy leaves the one in force.
        policy = LinkPolicy.loads(text, f"set by {caller.name}")
        with self._policy_lock:
            stored = self._shared.trust.set_link_policy(text, caller.name)
            self._shared.policy = policy
        audit_policy(self._shared, caller.name, policy)
        return _policy(policy, stored)
