"""The one error hierarchy of Corolla.

Every error Corolla raises derives from :class:`CorollaError` and carries a stable
``code`` (a member of :class:`ErrorCode`). The CLI maps codes to exit statuses and the
wire protocol maps them to status codes, so codes never change meaning once published.
Each error also subclasses the built-in that fits it, so ``except ValueError`` keeps working.

::

    CorollaError
    ├── ConfigError (ValueError)            bad settings, bad arguments
    ├── RecordError (ValueError)            a record with invalid names or values
    ├── CodecError (ValueError)             bytes that do not decode to an array
    ├── MessageError (ValueError)           misuse of a message (content vs error)
    ├── AppLoadError (ImportError)          an app or component that cannot be loaded
    ├── MissingExtraError (ImportError)     an optional dependency that is not installed
    ├── AggregationError (ValueError)       a reply that cannot be folded into the aggregate
    ├── NotEnoughNodesError (RuntimeError)  fewer nodes or replies than a strategy needs
    ├── ExecutionError (RuntimeError)       a backend that could not run a ClientApp call
    ├── AuthenticationError (PermissionError)  a caller that did not prove who it is
    └── PermissionDeniedError (PermissionError)  a caller whose role or policy forbids it
"""

from __future__ import annotations

import enum
from typing import Any

__all__ = [
    "AggregationError",
    "AppLoadError",
    "AuthenticationError",
    "CodecError",
    "ConfigError",
    "CorollaError",
    "ErrorCode",
    "ExecutionError",
    "MessageError",
    "MissingExtraError",
    "NotEnoughNodesError",
    "PermissionDeniedError",
    "RecordError",
]


class ErrorCode(enum.IntEnum):
    """Stable numeric codes, shared by exceptions and error replies."""

    UNKNOWN = 0
    CLIENT_APP_RAISED = 1
    MESSAGE_UNAVAILABLE = 2
    REPLY_UNAVAILABLE = 3
    NODE_UNAVAILABLE = 4
    TIMEOUT = 5
    NO_HANDLER = 6
    INVALID_REPLY = 7
    WORKER_CRASHED = 8
    CONFIG = 20
    RECORD = 21
    CODEC = 22
    MESSAGE = 23
    APP_LOAD = 24
    MISSING_EXTRA = 25
    AGGREGATION = 26
    NOT_ENOUGH_NODES = 27
    EXECUTION = 28
    NOT_FOUND = 29
    CONFLICT = 30
    UNAUTHENTICATED = 31
    STORAGE = 32
    TRANSPORT = 33
    PERMISSION_DENIED = 34


class CorollaError(Exception):
    """Base class of every error Corolla raises."""

    code: ErrorCode = ErrorCode.UNKNOWN


class ConfigError(CorollaError, ValueError):
    """A setting, argument or configuration file is invalid."""

    code = ErrorCode.CONFIG


class RecordError(CorollaError, ValueError):
    """A record was given a name or value it cannot hold."""

    code = ErrorCode.RECORD


class CodecError(CorollaError, ValueError):
    """Bytes could not be decoded into an array, or an array cannot be encoded."""

    code = ErrorCode.CODEC


class MessageError(CorollaError, ValueError):
    """A message was used wrongly, e.g. reading content from an error message."""

    code = ErrorCode.MESSAGE


class AppLoadError(CorollaError, ImportError):
    """An app directory or a ``module:attribute`` component could not be loaded."""

    code = ErrorCode.APP_LOAD


class MissingExtraError(CorollaError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""

    code = ErrorCode.MISSING_EXTRA

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"{package} is not installed; install it with: pip install 'corolla[{extra}]'"
        )
        self.package = package
        self.extra = extra

    def __reduce__(self) -> tuple[Any, ...]:
        # The default rebuilds from ``args`` (the message), which this __init__ cannot take;
        # errors cross process boundaries in simulation, so they must survive pickling.
        return (type(self), (self.package, self.extra))


class AggregationError(CorollaError, ValueError):
    """A reply cannot be folded into an aggregate (wrong names, shapes, dtypes, NaN...)."""

    code = ErrorCode.AGGREGATION


class NotEnoughNodesError(CorollaError, RuntimeError):
    """Fewer nodes are available, or fewer replies arrived, than a strategy requires."""

    code = ErrorCode.NOT_ENOUGH_NODES


class ExecutionError(CorollaError, RuntimeError):
    """A simulation backend failed to run ClientApp calls (e.g. a worker died)."""

    code = ErrorCode.EXECUTION


class AuthenticationError(CorollaError, PermissionError):
    """A caller did not prove who it is: no credentials, or ones that do not check out
    (an unknown key, a bad signature, an expired or foreign token, a replayed request)."""

    code = ErrorCode.UNAUTHENTICATED


class PermissionDeniedError(CorollaError, PermissionError):
    """A caller who proved who it is may not do what it asked: its role does not allow
    it, or a policy refuses it."""

    code = ErrorCode.PERMISSION_DENIED
