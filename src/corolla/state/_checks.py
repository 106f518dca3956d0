"""Validation shared by every backend: what goes into state is checked once, the same way."""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
from collections.abc import Mapping
from typing import Any

from corolla.core import ConfigError, UserConfigValue

from ._errors import InvalidBlobHashError

__all__ = [
    "SQLITE_INT_MAX",
    "SQLITE_INT_MIN",
    "check_attributes",
    "check_blob_hash",
    "check_limit",
    "check_seconds",
    "check_user_config",
    "dump_json",
    "fits_sqlite",
    "hash_token",
    "new_id",
    "new_token",
]

_HASH = re.compile(r"[0-9a-f]{64}")

#: SQLite's integers are signed 64-bit; the wire's ids are unsigned 64-bit.
SQLITE_INT_MIN = -(2**63)
SQLITE_INT_MAX = 2**63 - 1


def fits_sqlite(value: object) -> bool:
    """False for an int SQLite cannot hold (binding it raises ``OverflowError``).

    No row can have such an id, so a lookup by one answers "unknown" without asking
    SQLite. Values of other types are left to SQLite, which finds no row for them.
    """
    return not isinstance(value, int) or SQLITE_INT_MIN <= value <= SQLITE_INT_MAX


def check_blob_hash(blob_hash: object) -> str:
    """Return ``blob_hash`` if it is a sha256 hex digest (64 lowercase hex digits).

    Only this exact spelling is accepted, so a hash can never name a path outside the blob
    directory (``../``, ``/``, NUL) and one content never has two names.

    Raises
    ------
    InvalidBlobHashError
        For anything else.
    """
    if not isinstance(blob_hash, str) or _HASH.fullmatch(blob_hash) is None:
        raise InvalidBlobHashError(
            f"invalid blob hash {blob_hash!r}: expected a sha256 digest as 64 lowercase "
            "hexadecimal digits"
        )
    return blob_hash


def check_limit(limit: object) -> int:
    """Return ``limit`` as an SQL ``LIMIT`` (-1 for None, meaning no limit; a limit past
    SQLite's integers is no limit either).

    Raises
    ------
    ConfigError
        If ``limit`` is neither None nor a positive int.
    """
    if limit is None:
        return -1
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError(f"limit must be a positive int or None, got {limit!r}")
    return limit if limit <= SQLITE_INT_MAX else -1


def check_seconds(value: object, what: str) -> float:
    """Return ``value`` as a float if it is a positive, finite number of seconds.

    Raises
    ------
    ConfigError
        Otherwise.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{what} must be a number of seconds, got {value!r}")
    seconds = float(value)
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ConfigError(f"{what} must be positive and finite, got {value!r}")
    return seconds


def check_attributes(attributes: Mapping[str, str] | None) -> dict[str, str]:
    """Return a copy of node attributes, checking they map strings to strings.

    Raises
    ------
    ConfigError
        If a key or value is not a string, or a key is empty.
    """
    result: dict[str, str] = {}
    for key, value in (attributes or {}).items():
        if not isinstance(key, str) or not key or not isinstance(value, str):
            raise ConfigError(
                f"node attributes map non-empty strings to strings, got {key!r}: {value!r}"
            )
        result[key] = value
    return result


def check_user_config(
    config: Mapping[str, UserConfigValue] | None, what: str
) -> dict[str, UserConfigValue]:
    """Return a copy of a node or run config, checking keys and values.

    Raises
    ------
    ConfigError
        If a key is not a non-empty string, or a value is not bool, int, float or str, or
        is a float that is not finite (JSON cannot carry it).
    """
    result: dict[str, UserConfigValue] = {}
    for key, value in (config or {}).items():
        if not isinstance(key, str) or not key:
            raise ConfigError(f"{what} keys must be non-empty strings, got {key!r}")
        if not isinstance(value, bool | int | float | str):
            raise ConfigError(
                f"{what} value of {key!r} must be bool, int, float or str, "
                f"got {type(value).__name__}"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{what} value of {key!r} must be finite, got {value!r}")
        result[key] = value
    return result


def _plain(value: Any) -> Any:
    # numpy scalars (a metric computed with numpy) know how to become Python numbers.
    item = getattr(value, "item", None)
    if callable(item):
        return item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dump_json(value: Any, what: str) -> str:
    """Serialize ``value`` as compact JSON; NaN and infinities are kept (metrics have them).

    Raises
    ------
    ConfigError
        If ``value`` holds something JSON cannot represent.
    """
    try:
        return json.dumps(value, separators=(",", ":"), default=_plain)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what} cannot be stored as JSON: {exc}") from exc


def new_id() -> int:
    """A random id in ``[1, 2**63 - 1]``: positive, and fits a signed 64-bit column.

    Drawn from ``secrets``, so ids cannot be predicted from earlier ones.
    """
    while True:
        value = secrets.randbits(63)
        if value > 0:  # 0 stands for the ServerApp side
            return value


def new_token() -> str:
    """A fresh node credential: 256 random bits, URL-safe text."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """What is stored of a token: its sha256 digest.

    The token holds 256 random bits, so a fast hash is enough; a slow password hash
    would only protect guessable secrets.
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
