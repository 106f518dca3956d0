"""What a link trusts: its accounts (with their roles and password hashes) and the public
keys of the nodes an admin registered, in one SQLite file of its state directory
(``trust.db``, its owner's only).

Passwords are stored as scrypt hashes (memory-hard: 32 MiB per guess with the default
parameters), each with its own random salt, in the form
``scrypt$<log2 n>$<r>$<p>$<salt>$<hash>`` (base64), so the parameters can grow without
invalidating older hashes.

The file is separate from the link's run state: accounts and keys are the federation's
governance, kept and backed up on their own, and the admin's bootstrap step
(``corolla accounts init``) writes it before any link runs.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import functools
import hashlib
import hmac
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..core import ConfigError
from ._keys import public_key_from_text, public_key_text

__all__ = [
    "Account",
    "RegisteredKey",
    "Role",
    "StoredPolicy",
    "TrustStore",
    "check_account_name",
    "hash_password",
    "password_matches",
]

#: scrypt's cost: n = 2**15, r = 8 (32 MiB and ~0.1 s a hash), p = 1.
_SCRYPT_LOG_N = 15
_SCRYPT_R = 8
_SCRYPT_P = 1
_SALT_BYTES = 16
_HASH_BYTES = 32
#: Shortest password an account may have.
MIN_PASSWORD_CHARS = 8
_MAX_NAME_CHARS = 64


class Role(enum.Enum):
    """What an account may do on the Control API; each role may do what the ones below
    it may."""

    VIEWER = "viewer"  # read runs, nodes, events and results
    OPERATOR = "operator"  # also submit and stop runs
    ADMIN = "admin"  # also manage accounts, node keys and policy

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def allows(self, required: Role) -> bool:
        """Whether this role may do what ``required`` may."""
        return self.rank >= required.rank

    @classmethod
    def parse(cls, text: str) -> Role:
        """The role named ``text``.

        Raises
        ------
        ConfigError
            If no role has that name.
        """
        try:
            return cls(text.strip().lower())
        except ValueError:
            names = ", ".join(r.value for r in cls)
            raise ConfigError(f"no role {text!r}; the roles are {names}") from None


_RANKS = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """The stored form of ``password``: its scrypt hash with a fresh salt."""
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    digest = hashlib.scrypt(
        password.encode(),
        salt=salt,
        n=2**_SCRYPT_LOG_N,
        r=_SCRYPT_R,
        p=_SCRYPT_P,
        maxmem=2**26,
        dklen=_HASH_BYTES,
    )
    return f"scrypt${_SCRYPT_LOG_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def password_matches(password: str, stored: str) -> bool:
    """Whether ``password`` is the one ``stored`` (from :func:`hash_password`) was made of;
    False for a stored form that cannot be read."""
    try:
        scheme, log_n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest, validate=True)
        computed = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt, validate=True),
            n=2 ** int(log_n),
            r=int(r),
            p=int(p),
            maxmem=2**27,
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(computed, expected)


def check_account_name(name: str) -> str:
    """``name``, if it can name an account: 1 to 64 letters, digits, ``.``, ``_``, ``-``
    or ``@``.

    Raises
    ------
    ConfigError
        If it cannot.
    """
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-@")
    if not name or len(name) > _MAX_NAME_CHARS or not set(name) <= allowed:
        raise ConfigError(
            f"account name {name!r}: use 1 to {_MAX_NAME_CHARS} letters, digits, '.', '_', "
            "'-' or '@'"
        )
    return name


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_CHARS:
        raise ConfigError(f"a password has at least {MIN_PASSWORD_CHARS} characters")


@dataclasses.dataclass(frozen=True)
class Account:
    """An account of the Control API."""

    name: str
    role: Role
    created_at: float
    #: Tokens issued before this time are void: the account's creation, or the last
    #: change of its password (a stolen token dies with the password it came from).
    tokens_since: float


@dataclasses.dataclass(frozen=True)
class StoredPolicy:
    """The link policy last set, as TOML (see :class:`~corolla.trust.LinkPolicy`)."""

    text: str
    set_at: float
    #: Who set it: an admin's account, or ``corolla link --policy FILE``.
    set_by: str


@dataclasses.dataclass(frozen=True)
class RegisteredKey:
    """A node public key an admin registered: nodes presenting it may join."""

    public_key: str
    name: str
    added_at: float
    added_by: str


_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at REAL NOT NULL,
    tokens_since REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS node_keys (
    public_key TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    added_at REAL NOT NULL,
    added_by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS node_bindings (
    node_id INTEGER PRIMARY KEY,
    public_key TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS link_policy (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    text TEXT NOT NULL,
    set_at REAL NOT NULL,
    set_by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS secrets (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
"""


class TrustStore:
    """The accounts and registered node keys of a link, in the SQLite file ``path``.

    Safe to use from several threads, and from several processes on one file (the
    admin's bootstrap command beside a running link): every change is one transaction.

    Parameters
    ----------
    path
        The database file, created (readable by its owner only) if missing.
    clock
        Where the wall-clock time of each change is read.

    Raises
    ------
    ConfigError
        If the file exists but is not a trust store.
    """

    FILE = "trust.db"

    def __init__(
        self, path: str | os.PathLike[str], *, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()
        #: Changes whenever a node key is registered or removed in this process.
        self.node_keys_version = 0
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self.path.exists():
            fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA busy_timeout = 10000")
            self._db.executescript(_SCHEMA)
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"{self.path} is not a Corolla trust store: {exc}") from None

    def _migrate(self) -> None:
        """Bring a store written by an earlier version up to this one's schema."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(accounts)")}
        if "tokens_since" not in columns:
            # Tokens issued before the column existed stay valid, as they were.
            self._db.execute("ALTER TABLE accounts ADD COLUMN tokens_since REAL NOT NULL DEFAULT 0")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> TrustStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # Accounts.

    def add_account(self, name: str, role: Role, password: str) -> Account:
        """Create account ``name``.

        Raises
        ------
        ConfigError
            If the name is malformed or taken, or the password too short.
        """
        check_account_name(name)
        _check_password(password)
        stored = hash_password(password)  # slow: outside the transaction
        now = self._clock()
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM accounts WHERE name = ?", (name,)).fetchone():
                raise ConfigError(f"account {name!r} exists already")
            db.execute(
                "INSERT INTO accounts (name, role, password_hash, created_at, tokens_since) "
                "VALUES (?,?,?,?,?)",
                (name, role.value, stored, now, now),
            )
        return Account(name, role, now, now)

    def remove_account(self, name: str) -> None:
        """Delete account ``name``; the last admin cannot be removed.

        Raises
        ------
        ConfigError
            If there is no such account, or it is the last admin.
        """
        with self._transaction() as db:
            row = db.execute("SELECT role FROM accounts WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise ConfigError(f"no account {name!r}")
            if row[0] == Role.ADMIN.value and self._admins(db) == 1:
                raise ConfigError(f"{name!r} is the last admin: add another admin first")
            db.execute("DELETE FROM accounts WHERE name = ?", (name,))

    def set_role(self, name: str, role: Role) -> Account:
        """Give account ``name`` role ``role``; the last admin keeps hers.

        Raises
        ------
        ConfigError
            If there is no such account, or it is the last admin losing the role.
        """
        with self._transaction() as db:
            row = db.execute(
                "SELECT role, created_at, tokens_since FROM accounts WHERE name = ?", (name,)
            ).fetchone()
            if row is None:
                raise ConfigError(f"no account {name!r}")
            if row[0] == Role.ADMIN.value and role is not Role.ADMIN and self._admins(db) == 1:
                raise ConfigError(f"{name!r} is the last admin: add another admin first")
            db.execute("UPDATE accounts SET role = ? WHERE name = ?", (role.value, name))
        return Account(name, role, row[1], row[2])

    def set_password(self, name: str, password: str) -> None:
        """Change account ``name``'s password; the tokens issued to it until now are void.

        Raises
        ------
        ConfigError
            If there is no such account, or the password is too short.
        """
        _check_password(password)
        stored = hash_password(password)
        with self._transaction() as db:
            changed = db.execute(
                "UPDATE accounts SET password_hash = ?, tokens_since = ? WHERE name = ?",
                (stored, self._clock(), name),
            ).rowcount
        if not changed:
            raise ConfigError(f"no account {name!r}")

    @staticmethod
    def _admins(db: sqlite3.Connection) -> int:
        row = db.execute("SELECT COUNT(*) FROM accounts WHERE role = ?", (Role.ADMIN.value,))
        return int(row.fetchone()[0])

    def check_password(self, name: str, password: str) -> Account | None:
        """The account, if ``password`` is its password; None otherwise (an unknown name
        costs a hash too, so the time taken does not tell which names exist)."""
        with self._lock:
            row = self._db.execute(
                "SELECT role, password_hash, created_at, tokens_since FROM accounts WHERE name = ?",
                (name,),
            ).fetchone()
        if row is None:
            password_matches(password, _dummy_hash())
            return None
        if not password_matches(password, row[1]):
            return None
        return Account(name, Role(row[0]), row[2], row[3])

    def account(self, name: str) -> Account | None:
        """Account ``name``, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT role, created_at, tokens_since FROM accounts WHERE name = ?", (name,)
            ).fetchone()
        return None if row is None else Account(name, Role(row[0]), row[1], row[2])

    def accounts(self) -> list[Account]:
        """Every account, by name."""
        with self._lock:
            rows = self._db.execute(
                "SELECT name, role, created_at, tokens_since FROM accounts ORDER BY name"
            ).fetchall()
        return [Account(n, Role(r), t, since) for n, r, t, since in rows]

    # The link policy.

    def set_link_policy(self, text: str, set_by: str) -> StoredPolicy:
        """Keep ``text`` as the link's policy (checked by the caller), in place of the
        one before."""
        stored = StoredPolicy(text, self._clock(), set_by)
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO link_policy (id, text, set_at, set_by) VALUES (1,?,?,?)",
                (stored.text, stored.set_at, stored.set_by),
            )
        return stored

    def link_policy(self) -> StoredPolicy | None:
        """The link policy last set, or None if none was."""
        with self._lock:
            row = self._db.execute("SELECT text, set_at, set_by FROM link_policy").fetchone()
        return None if row is None else StoredPolicy(row[0], row[1], row[2])

    # Node keys.

    def add_node_key(self, public_key: str, *, name: str = "", added_by: str = "") -> RegisteredKey:
        """Register a node's public key (``ed25519:...``); registering it again changes
        nothing but its name.

        Raises
        ------
        ConfigError
            If ``public_key`` is not a node public key.
        """
        text = public_key_text(public_key_from_text(public_key))  # validated, normalized
        now = self._clock()
        with self._transaction() as db:
            row = db.execute(
                "SELECT added_at, added_by FROM node_keys WHERE public_key = ?", (text,)
            ).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO node_keys (public_key, name, added_at, added_by) VALUES (?,?,?,?)",
                    (text, name, now, added_by),
                )
                self.node_keys_version += 1
                return RegisteredKey(text, name, now, added_by)
            db.execute("UPDATE node_keys SET name = ? WHERE public_key = ?", (name, text))
        return RegisteredKey(text, name, row[0], row[1])

    def remove_node_key(self, public_key: str) -> None:
        """Unregister a node key: its node is refused from its next call on.

        Raises
        ------
        ConfigError
            If the key is not registered.
        """
        text = public_key_text(public_key_from_text(public_key))
        with self._transaction() as db:
            removed = db.execute("DELETE FROM node_keys WHERE public_key = ?", (text,)).rowcount
            db.execute("DELETE FROM node_bindings WHERE public_key = ?", (text,))
            self.node_keys_version += 1
        if not removed:
            raise ConfigError(f"node key {text} is not registered")

    def node_key(self, public_key: str) -> RegisteredKey | None:
        """The registration of ``public_key`` (as :func:`public_key_text` writes it), or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT name, added_at, added_by FROM node_keys WHERE public_key = ?",
                (public_key,),
            ).fetchone()
        return None if row is None else RegisteredKey(public_key, *row)

    def node_keys(self) -> list[RegisteredKey]:
        """Every registered node key, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT public_key, name, added_at, added_by FROM node_keys ORDER BY added_at"
            ).fetchall()
        return [RegisteredKey(*row) for row in rows]

    def bind_node(self, node_id: int, public_key: str) -> None:
        """Record that node ``node_id`` registered with ``public_key``: its requests must be
        signed with it. A key's earlier node ids are unbound (a node that joined anew)."""
        with self._transaction() as db:
            db.execute("DELETE FROM node_bindings WHERE public_key = ?", (public_key,))
            db.execute(
                "INSERT OR REPLACE INTO node_bindings (node_id, public_key) VALUES (?, ?)",
                (node_id, public_key),
            )

    def bound_key(self, node_id: int) -> str | None:
        """The registered key node ``node_id`` joined with; None if it joined with none,
        or its key was unregistered since."""
        with self._lock:
            row = self._db.execute(
                "SELECT b.public_key FROM node_bindings b JOIN node_keys k "
                "ON k.public_key = b.public_key WHERE b.node_id = ?",
                (node_id,),
            ).fetchone()
        return None if row is None else str(row[0])

    # Secrets.

    def secret(self, name: str, size: int = 32) -> bytes:
        """The link's secret ``name`` (e.g. the key that signs its tokens), made on first
        use and kept in the store."""
        with self._transaction() as db:
            row = db.execute("SELECT value FROM secrets WHERE name = ?", (name,)).fetchone()
            if row is not None:
                return bytes(row[0])
            value = secrets.token_bytes(size)
            db.execute("INSERT INTO secrets (name, value) VALUES (?, ?)", (name, value))
        return value


@functools.cache
def _dummy_hash() -> str:
    """Checked against when a name is unknown, so that answering takes as long."""
    return hash_password("corolla-no-such-account", salt=b"\0" * _SALT_BYTES)
