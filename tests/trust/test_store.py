"""The trust store: accounts with roles and scrypt hashes, the time each account's tokens
are valid from, registered node keys, and stores written by an earlier version."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from corolla.core import ConfigError
from corolla.trust import NodeKey, Role, TrustStore


class Clock:
    """The store's wall clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_an_account_is_made_with_a_hash_not_its_password(tmp_path: Path) -> None:
    clock = Clock()
    with TrustStore(tmp_path / "trust.db", clock=clock) as store:
        made = store.add_account("root", Role.ADMIN, "root-password")

        assert (made.role, made.created_at, made.tokens_since) == (Role.ADMIN, 1_000.0, 1_000.0)
        assert store.check_password("root", "root-password") == made
        assert store.check_password("root", "wrong-password") is None
        assert store.check_password("nobody", "root-password") is None
    assert b"root-password" not in (tmp_path / "trust.db").read_bytes()
    assert stat.S_IMODE(os.stat(tmp_path / "trust.db").st_mode) == 0o600


def test_a_password_change_voids_the_tokens_issued_before(tmp_path: Path) -> None:
    clock = Clock()
    with TrustStore(tmp_path / "trust.db", clock=clock) as store:
        store.add_account("vic", Role.VIEWER, "vic-password")
        clock.now += 60

        store.set_password("vic", "vic-new-password")
        clock.now += 60
        promoted = store.set_role("vic", Role.OPERATOR)

        account = store.account("vic")
        assert account is not None
        assert (account.created_at, account.tokens_since) == (1_000.0, 1_060.0)
        assert promoted == account  # a role change leaves the tokens valid
        assert store.check_password("vic", "vic-new-password") == account
        with pytest.raises(ConfigError, match="no account 'eve'"):
            store.set_password("eve", "eve-password")
        with pytest.raises(ConfigError, match="at least 8 characters"):
            store.set_password("vic", "short")


def test_the_last_admin_cannot_be_removed_or_demoted(tmp_path: Path) -> None:
    with TrustStore(tmp_path / "trust.db") as store:
        store.add_account("root", Role.ADMIN, "root-password")
        with pytest.raises(ConfigError, match="last admin"):
            store.remove_account("root")
        with pytest.raises(ConfigError, match="last admin"):
            store.set_role("root", Role.VIEWER)
        with pytest.raises(ConfigError, match="exists already"):
            store.add_account("root", Role.VIEWER, "other-password")

        assert [(a.name, a.role) for a in store.accounts()] == [("root", Role.ADMIN)]


def test_a_store_of_an_earlier_version_opens_with_its_tokens_still_valid(tmp_path: Path) -> None:
    # Arrange: the accounts table as the first trust stores wrote it
    path = tmp_path / "trust.db"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE accounts (name TEXT PRIMARY KEY, role TEXT NOT NULL, "
            "password_hash TEXT NOT NULL, created_at REAL NOT NULL)"
        )
    with TrustStore(tmp_path / "made.db") as other:
        other.add_account("root", Role.ADMIN, "root-password")
        hashed = other._db.execute("SELECT password_hash FROM accounts").fetchone()[0]
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO accounts VALUES ('root', 'admin', ?, 500.0)", (hashed,))

    # Act
    with TrustStore(path) as store:
        account = store.account("root")

        # Assert: the account and its password as they were; its tokens not voided
        assert account is not None
        assert (account.role, account.created_at, account.tokens_since) == (
            Role.ADMIN,
            500.0,
            0.0,
        )
        assert store.check_password("root", "root-password") == account


def test_a_file_that_is_not_a_trust_store_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "trust.db"
    path.write_bytes(b"not a database at all" * 100)

    with pytest.raises(ConfigError, match="is not a Corolla trust store"):
        TrustStore(path)


def test_registered_node_keys_are_counted_and_bound(tmp_path: Path) -> None:
    key = NodeKey.load_or_create(tmp_path / "node")[0].public_text
    with TrustStore(tmp_path / "trust.db") as store:
        version = store.node_keys_version
        store.add_node_key(key, name="hospital-a", added_by="root")
        store.bind_node(7, key)

        assert store.node_keys_version > version
        assert [k.name for k in store.node_keys()] == ["hospital-a"]
        assert store.bound_key(7) == key
        store.remove_node_key(key)
        assert store.node_key(key) is None
