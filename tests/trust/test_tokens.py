"""Account tokens: a link accepts the ones it issued for its federation until they expire,
and refuses every other with a reason that says what is wrong."""

from __future__ import annotations

import base64
import json

import jwt
import pytest

from corolla.core import AuthenticationError, ConfigError
from corolla.trust import Role, Tokens

KEY = b"k" * 32


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_an_issued_token_checks_out_with_what_it_says() -> None:
    # Arrange
    clock = Clock()
    tokens = Tokens(KEY, "alpha", lifetime=60, clock=clock)

    # Act
    token, issued = tokens.issue("alice", Role.OPERATOR)
    checked = tokens.check(token)

    # Assert
    assert checked == issued
    assert (checked.account, checked.role, checked.federation) == ("alice", Role.OPERATOR, "alpha")
    assert checked.expires_at == clock.now + 60


def test_each_token_gets_its_own_id() -> None:
    tokens = Tokens(KEY, "alpha")

    ids = {tokens.issue("alice", Role.VIEWER)[1].token_id for _ in range(20)}

    assert len(ids) == 20


@pytest.mark.parametrize("token", [None, ""])
def test_no_token_is_refused_saying_to_log_in(token: str | None) -> None:
    with pytest.raises(AuthenticationError, match="no token: log in"):
        Tokens(KEY, "alpha").check(token)


def test_an_expired_token_is_refused_saying_when_it_expired() -> None:
    # Arrange
    clock = Clock()
    tokens = Tokens(KEY, "alpha", lifetime=1, clock=clock)
    token, _ = tokens.issue("alice", Role.ADMIN)

    # Act: one second on, the token's last moment is past
    clock.now += 1

    # Assert
    with pytest.raises(AuthenticationError, match=r"the token expired at .* UTC: log in again"):
        tokens.check(token)


def test_a_token_of_another_federation_is_refused_naming_both() -> None:
    # Arrange: the same key (a copied trust store), another federation
    token, _ = Tokens(KEY, "alpha").issue("alice", Role.ADMIN)

    # Act / Assert
    with pytest.raises(AuthenticationError) as refused:
        Tokens(KEY, "beta").check(token)
    assert "federation 'alpha'" in str(refused.value)
    assert "serves 'beta'" in str(refused.value)


def test_a_token_signed_with_another_key_is_refused() -> None:
    token, _ = Tokens(b"x" * 32, "alpha").issue("alice", Role.ADMIN)

    with pytest.raises(AuthenticationError, match="signature does not check out"):
        Tokens(KEY, "alpha").check(token)


def _segments(token: str) -> list[str]:
    return token.split(".")


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_a_token_whose_claims_were_edited_is_refused() -> None:
    # Arrange: a viewer's token, its role rewritten to admin
    token, _ = Tokens(KEY, "alpha").issue("vic", Role.VIEWER)
    header, payload, signature = _segments(token)
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["role"] = "admin"

    # Act / Assert
    with pytest.raises(AuthenticationError, match="signature does not check out"):
        Tokens(KEY, "alpha").check(".".join([header, _b64(claims), signature]))


def test_an_unsigned_token_is_refused() -> None:
    # Arrange: alg "none", the classic forgery
    claims = {"sub": "eve", "role": "admin", "fed": "alpha", "iat": 0, "exp": 4e9, "jti": "x"}
    forged = ".".join([_b64({"alg": "none", "typ": "JWT"}), _b64(claims), ""])

    with pytest.raises(AuthenticationError, match="malformed token"):
        Tokens(KEY, "alpha").check(forged)


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "Bearer x", "é" * 10])
def test_a_malformed_token_is_refused(token: str) -> None:
    with pytest.raises(AuthenticationError, match="malformed token"):
        Tokens(KEY, "alpha").check(token)


def test_a_token_without_a_claim_the_link_needs_is_refused() -> None:
    token = jwt.encode({"sub": "alice", "fed": "alpha", "exp": 4e9}, KEY, algorithm="HS256")

    with pytest.raises(AuthenticationError, match="malformed token"):
        Tokens(KEY, "alpha").check(token)


def test_a_token_with_an_unknown_role_is_refused() -> None:
    claims = {"sub": "eve", "role": "root", "fed": "alpha", "iat": 0, "exp": 4e9, "jti": "x"}
    token = jwt.encode(claims, KEY, algorithm="HS256")

    with pytest.raises(AuthenticationError, match="malformed token"):
        Tokens(KEY, "alpha").check(token)


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("exp", -1e300),  # expired before any date: naming when raised an OverflowError
        ("exp", 10**400),  # no float: an OverflowError
        ("exp", float("nan")),  # never expired
        ("exp", float("inf")),
        ("iat", -(10**400)),
        ("iat", float("nan")),
    ],
)
def test_a_token_whose_times_no_clock_reads_is_refused_as_malformed(
    claim: str, value: float
) -> None:
    # Only a token made with the link's key gets past its signature: the fuzz of a link
    # forges them so.
    claims = {"sub": "alice", "role": "admin", "fed": "alpha", "iat": 0, "exp": 4e9, "jti": "x"}
    token = jwt.encode({**claims, claim: value}, KEY, algorithm="HS256")

    with pytest.raises(AuthenticationError, match="malformed token"):
        Tokens(KEY, "alpha", clock=Clock()).check(token)


def test_a_short_key_or_a_lifetime_that_is_no_duration_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        Tokens(b"short", "alpha")
    for lifetime in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="lifetime"):
            Tokens(KEY, "alpha", lifetime=lifetime)
