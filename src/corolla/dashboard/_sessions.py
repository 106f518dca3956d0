"""Who is looking at the dashboard: signed session cookies of the link's accounts.

On a link with accounts (``corolla link --auth``) a person logs in with the name and
password of their account; the dashboard answers with a session cookie (HttpOnly,
SameSite=Strict, Secure over HTTPS) holding the account's name and an expiry time,
signed with HMAC-SHA256 under a key the link keeps in its trust store, so it outlives a
restart of the link. Each request reads the account's role afresh: an account removed or
demoted loses its rights at once, and a session begun before the account's password last
changed is void. Without accounts, everyone is the anonymous :data:`OPEN_VIEWER`, who may
do what the Control API then lets everyone do: read and stop runs.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import json
import time
from collections.abc import Callable

from corolla.trust import Account, Role, TrustStore

__all__ = ["COOKIE", "OPEN_VIEWER", "Sessions", "Viewer"]

#: The session cookie's name.
COOKIE = "corolla_session"

#: Seconds a session lasts after a login.
SESSION_S = 12 * 3600.0


@dataclasses.dataclass(frozen=True)
class Viewer:
    """Who makes a request: an account's name and role, or the anonymous viewer of a
    link without accounts."""

    name: str
    role: Role
    #: False on a link without accounts: nobody logs in, everybody may do everything.
    accounts: bool = True

    def may(self, required: Role) -> bool:
        """Whether this viewer's role allows what needs ``required``."""
        return not self.accounts or self.role.allows(required)


OPEN_VIEWER = Viewer("anonymous", Role.ADMIN, accounts=False)


#: Checks a login: ``(name, password, peer)`` to the account, or raises
#: :class:`~corolla.core.AuthenticationError` saying why (the link's, throttled and audited).
CheckLogin = Callable[[str, str, str], Account]


class Sessions:
    """Signs and checks session cookies against the accounts of ``trust``.

    ``check_login`` checks a name and password (the link's
    :meth:`~corolla.runtime.Link.check_login`, which throttles and audits them);
    ``clock`` gives seconds since the epoch; tests pass their own.
    """

    def __init__(
        self,
        trust: TrustStore,
        check_login: CheckLogin,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._trust = trust
        self._check_login = check_login
        self._key = trust.secret("dashboard-session-key")
        self._clock = clock

    def login(self, name: str, password: str, peer: str) -> tuple[Viewer, str]:
        """The viewer and a new session cookie's value, if ``password`` is the account's.

        Raises
        ------
        AuthenticationError
            If the name or password is wrong (an unknown name and a wrong password look
            alike), or the name is refused for now after too many failures.
        """
        account = self._check_login(name, password, peer)
        now = self._clock()
        body = json.dumps({"name": name, "at": now, "until": now + SESSION_S}).encode()
        token = base64.urlsafe_b64encode(body).decode().rstrip("=")
        return Viewer(name, account.role), f"{token}.{self._sign(token)}"

    def viewer(self, cookie: str | None) -> Viewer | None:
        """The viewer a session cookie names, if it is genuine, unexpired, and its account
        still exists and kept its password; None otherwise."""
        if not cookie or "." not in cookie:
            return None
        token, _, signature = cookie.rpartition(".")
        if not hmac.compare_digest(signature, self._sign(token)):
            return None
        try:
            claims = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            name, issued, until = str(claims["name"]), float(claims["at"]), float(claims["until"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            return None
        if self._clock() >= until:
            return None
        account = self._trust.account(name)
        if account is None or account.tokens_since > issued:
            return None
        return Viewer(name, account.role)

    def _sign(self, token: str) -> str:
        digest = hmac.new(self._key, token.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")
