"""Session cookies: signed, expiring, and void once their account changes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from corolla.core import AuthenticationError
from corolla.dashboard._sessions import OPEN_VIEWER, SESSION_S, Sessions, Viewer
from corolla.trust import Account, Role, TrustStore


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def trust(tmp_path: Path, clock: Clock) -> Iterator[TrustStore]:
    with TrustStore(tmp_path / "trust.db", clock=clock) as store:
        store.add_account("vic", Role.VIEWER, "viewer-password")
        yield store


def _sessions(trust: TrustStore, clock: Clock) -> Sessions:
    """Sessions checking passwords against ``trust`` alone (the link adds its throttle
    and audit log; tests/dashboard/test_server.py checks those)."""

    def check(name: str, password: str, peer: str) -> Account:
        account = trust.check_password(name, password)
        if account is None:
            raise AuthenticationError(f"wrong account name or password for {name!r}")
        return account

    return Sessions(trust, check, clock=clock)


def test_a_login_gives_a_cookie_that_names_the_viewer(trust, clock):
    sessions = _sessions(trust, clock)

    viewer, cookie = sessions.login("vic", "viewer-password", "127.0.0.1:1")

    assert viewer == Viewer("vic", Role.VIEWER)
    assert sessions.viewer(cookie) == viewer


def test_a_wrong_password_or_name_is_refused(trust, clock):
    sessions = _sessions(trust, clock)

    with pytest.raises(AuthenticationError, match="wrong account name or password"):
        sessions.login("vic", "wrong-password", "127.0.0.1:1")
    with pytest.raises(AuthenticationError, match="wrong account name or password"):
        sessions.login("nobody", "viewer-password", "127.0.0.1:1")


@pytest.mark.parametrize("cookie", [None, "", "garbage", "a.b", "e30.x"])
def test_a_malformed_cookie_names_nobody(trust, clock, cookie):
    assert _sessions(trust, clock).viewer(cookie) is None


def test_a_cookie_signed_by_another_link_names_nobody(trust, clock, tmp_path):
    _, cookie = _sessions(trust, clock).login("vic", "viewer-password", "127.0.0.1:1")
    with TrustStore(tmp_path / "other.db", clock=clock) as other:
        other.add_account("vic", Role.VIEWER, "viewer-password")

        assert _sessions(other, clock).viewer(cookie) is None


def test_a_session_ends_after_its_time(trust, clock):
    sessions = _sessions(trust, clock)
    _, cookie = sessions.login("vic", "viewer-password", "127.0.0.1:1")

    clock.now += SESSION_S

    assert sessions.viewer(cookie) is None


def test_a_demoted_removed_or_repassworded_account_loses_its_session_at_once(trust, clock):
    sessions = _sessions(trust, clock)
    _, cookie = sessions.login("vic", "viewer-password", "127.0.0.1:1")

    trust.set_role("vic", Role.OPERATOR)
    promoted = sessions.viewer(cookie)
    clock.now += 1
    trust.set_password("vic", "another-password")
    after_password = sessions.viewer(cookie)
    _, fresh = sessions.login("vic", "another-password", "127.0.0.1:1")
    trust.remove_account("vic")

    assert promoted == Viewer("vic", Role.OPERATOR)
    assert after_password is None
    assert sessions.viewer(fresh) is None


def test_without_accounts_everyone_may_do_everything():
    assert OPEN_VIEWER.may(Role.OPERATOR) and OPEN_VIEWER.may(Role.ADMIN)
    assert not Viewer("vic", Role.VIEWER).may(Role.OPERATOR)
