"""The first admin of a link, made on its machine before accounts are required
(``corolla accounts init``): the one change to its accounts that does not go through a
running link."""

from __future__ import annotations

import os
from pathlib import Path

from corolla.core import ConfigError
from corolla.state import StateDirectoryLock, StateInUseError
from corolla.trust import Account, AuditLog, Role, TrustStore, check_account_name

from .._state_dir import prepare_state_dir

__all__ = ["bootstrap_admin", "check_no_admin", "has_admin"]


def has_admin(state_dir: str | os.PathLike[str]) -> bool:
    """Whether the trust store of the link state ``state_dir`` has an admin (a missing
    store has none, and is not created)."""
    path = Path(state_dir) / TrustStore.FILE
    if not path.exists():
        return False
    with TrustStore(path) as trust:
        return bool(_admins(trust))


def _admins(trust: TrustStore) -> list[str]:
    return [a.name for a in trust.accounts() if a.role is Role.ADMIN]


def _refuse(path: Path, admins: list[str]) -> ConfigError:
    return ConfigError(
        f"{path} has an admin already ({', '.join(admins)}): log in as an admin and use "
        "`corolla accounts add`"
    )


def check_no_admin(state_dir: str | os.PathLike[str]) -> None:
    """Check that :func:`bootstrap_admin` may make the first admin of ``state_dir`` (before
    asking for a password).

    Raises
    ------
    ConfigError
        If the trust store has an admin.
    """
    path = Path(state_dir) / TrustStore.FILE
    if path.exists():
        with TrustStore(path) as trust:
            if admins := _admins(trust):
                raise _refuse(path, admins)


def bootstrap_admin(state_dir: str | os.PathLike[str], name: str, password: str) -> Account:
    """Create admin ``name`` in the trust store of the link state ``state_dir``, unless
    it has an admin already; recorded in the link's audit log (``account.init``) when no
    link is running on the state (a running one writes its log alone).

    Raises
    ------
    ConfigError
        If the store has an admin, the name is malformed, the password too short, or the
        state directory cannot be used.
    """
    check_account_name(name)
    state = prepare_state_dir(Path(state_dir))
    with TrustStore(state / TrustStore.FILE) as trust:
        if admins := _admins(trust):
            raise _refuse(trust.path, admins)
        account = trust.add_account(name, Role.ADMIN, password)
    try:
        lock = StateDirectoryLock(state)
    except StateInUseError:
        return account
    with lock, AuditLog(state / AuditLog.FILE) as audit:
        audit.record("account.init", name, {"name": name, "role": Role.ADMIN.value})
    return account
