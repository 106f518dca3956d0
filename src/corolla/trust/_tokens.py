"""Account tokens: what ``corolla login`` obtains and every Control call presents.

A token is a JSON Web Token signed with HMAC-SHA256 under a link's own key (its trust
store's secret ``token-key``), with the claims

- ``sub``: the account's name,
- ``role``: its role when the token was issued (the link reads the current one on every
  call: a demoted account does not keep its rights until the token expires),
- ``fed``: the federation of the link that issued it; another federation's link refuses
  it even if it shares the key,
- ``iat``, ``exp``: when it was issued and when it expires (seconds since the epoch),
- ``jti``: a random id, which names the token in the audit log.

Checking a token raises :class:`~corolla.core.AuthenticationError` saying what is wrong
with it: missing, expired, for another federation, not signed by this link, malformed.
"""

from __future__ import annotations

import dataclasses
import datetime
import secrets
import time
from collections.abc import Callable
from typing import Any

import jwt

from ..core import AuthenticationError, ConfigError
from ._store import Role

__all__ = ["DEFAULT_TOKEN_LIFETIME_S", "TokenClaims", "Tokens"]

#: How long a token is valid by default: one hour.
DEFAULT_TOKEN_LIFETIME_S = 3600.0
_ALGORITHM = "HS256"
_MIN_KEY_BYTES = 32
_REQUIRED = ("sub", "role", "fed", "iat", "exp", "jti")
#: The times a token may name: from the epoch to the year 9999, the ones a date shows.
_MIN_TIME = 0.0
_MAX_TIME = 253_402_300_799.0


@dataclasses.dataclass(frozen=True)
class TokenClaims:
    """What a valid token says."""

    account: str
    role: Role
    federation: str
    issued_at: float
    expires_at: float
    token_id: str


def _when(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


class Tokens:
    """Issues and checks the tokens of one link.

    Parameters
    ----------
    key
        The signing key (at least 32 bytes), e.g. ``TrustStore.secret("token-key")``.
    federation
        The federation the link serves: tokens name it, and tokens naming another are
        refused.
    lifetime
        Seconds a token is valid after it is issued.
    clock
        Where the wall-clock time is read.

    Raises
    ------
    ConfigError
        If the key is too short or the lifetime not a positive number.
    """

    def __init__(
        self,
        key: bytes,
        federation: str,
        *,
        lifetime: float = DEFAULT_TOKEN_LIFETIME_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if len(key) < _MIN_KEY_BYTES:
            raise ConfigError(f"a token key has at least {_MIN_KEY_BYTES} bytes")
        if not lifetime > 0 or lifetime == float("inf"):
            raise ConfigError(f"a token lifetime is a number of seconds above 0, not {lifetime}")
        self._key = key
        self.federation = federation
        self.lifetime = lifetime
        self._clock = clock

    def issue(self, account: str, role: Role) -> tuple[str, TokenClaims]:
        """A new token for ``account``, and what it says."""
        now = self._clock()
        claims = TokenClaims(
            account=account,
            role=role,
            federation=self.federation,
            issued_at=now,
            expires_at=now + self.lifetime,
            token_id=secrets.token_urlsafe(12),
        )
        payload = {
            "sub": claims.account,
            "role": claims.role.value,
            "fed": claims.federation,
            "iat": int(now),
            "exp": claims.expires_at,
            "jti": claims.token_id,
        }
        return jwt.encode(payload, self._key, algorithm=_ALGORITHM), claims

    def check(self, token: str | None) -> TokenClaims:
        """What ``token`` says, if this link issued it for its federation and it has not
        expired.

        Raises
        ------
        AuthenticationError
            If there is no token, or it is malformed, not signed with this link's key,
            expired, or for another federation.
        """
        if not token:
            raise AuthenticationError("no token: log in first")
        try:
            # Expiry is checked below, against the injected clock, with a clear message.
            payload: dict[str, Any] = jwt.decode(
                token,
                self._key,
                algorithms=[_ALGORITHM],
                options={"verify_exp": False, "verify_iat": False, "require": list(_REQUIRED)},
            )
        except jwt.InvalidSignatureError:
            raise AuthenticationError(
                "the token's signature does not check out (issued by another link?): log in again"
            ) from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthenticationError(f"malformed token: {exc}") from None
        except jwt.InvalidTokenError as exc:
            raise AuthenticationError(f"malformed token ({exc}): log in again") from None
        claims = _claims(payload)
        if claims.federation != self.federation:
            raise AuthenticationError(
                f"the token is for federation {claims.federation!r}; this link serves "
                f"{self.federation!r}: log in to this link"
            )
        if self._clock() >= claims.expires_at:
            raise AuthenticationError(
                f"the token expired at {_when(claims.expires_at)}: log in again"
            )
        return claims


def _claims(payload: dict[str, Any]) -> TokenClaims:
    try:
        role = Role(payload["role"])
        account, federation, token_id = (str(payload[k]) for k in ("sub", "fed", "jti"))
        issued_at, expires_at = float(payload["iat"]), float(payload["exp"])
    except (ValueError, TypeError, OverflowError) as exc:
        raise AuthenticationError(f"malformed token: {exc}") from None
    # Only a token made with the link's key gets here; still, no time outside what a
    # clock can read (NaN would never expire).
    if not all(_MIN_TIME <= t <= _MAX_TIME for t in (issued_at, expires_at)):
        raise AuthenticationError(
            "malformed token: its times (iat, exp) are not seconds since the epoch: log in again"
        )
    return TokenClaims(account, role, federation, issued_at, expires_at, token_id)
