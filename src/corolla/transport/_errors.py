"""Errors across the wire: corolla error codes <-> gRPC status codes.

A servicer that fails with a :class:`~corolla.core.CorollaError` ends the call with
:func:`abort`: the gRPC status of the table below, the error's message as the status
details, and the exact code in the trailing metadata entry ``corolla-error-code``. On the
calling side, :func:`error_from_rpc` (or :func:`translate_rpc_errors` /
:func:`iter_rpc`) turns a ``grpc.RpcError`` back into a corolla error, ``from`` the gRPC
one: the same class when the trailer names one that can be rebuilt from a message,
otherwise a :class:`TransportError`. Clients in other languages read the trailer, or
the status alone.

=================  ==================  =====================================
ErrorCode          gRPC status         typical cause
=================  ==================  =====================================
UNKNOWN            UNKNOWN             unexpected failure
CLIENT_APP_RAISED  UNKNOWN             the ClientApp raised
MESSAGE_UNAVAIL.   NOT_FOUND           unknown or expired message id
REPLY_UNAVAILABLE  NOT_FOUND           no reply for a message id
NODE_UNAVAILABLE   UNAVAILABLE         node offline or unknown
TIMEOUT            DEADLINE_EXCEEDED   a deadline passed
NO_HANDLER         UNIMPLEMENTED       no handler for a message type
INVALID_REPLY      INVALID_ARGUMENT    a reply of the wrong shape
WORKER_CRASHED     INTERNAL            a worker process died
CONFIG             INVALID_ARGUMENT    bad settings or arguments, unknown ids
RECORD             INVALID_ARGUMENT    invalid record names or values
CODEC              INVALID_ARGUMENT    malformed array, truncated stream, hash mismatch
MESSAGE            INVALID_ARGUMENT    malformed message
APP_LOAD           FAILED_PRECONDITION app bundle that fails to import
MISSING_EXTRA      FAILED_PRECONDITION optional dependency missing on the peer
AGGREGATION        INVALID_ARGUMENT    update with wrong names, shapes, NaN
NOT_ENOUGH_NODES   FAILED_PRECONDITION too few nodes or replies
EXECUTION          INTERNAL            a backend could not run a call
=================  ==================  =====================================

The one error class defined here::

    CorollaError
    └── TransportError (ConnectionError)   a call failed on the wire, or with a status
                                           that names no rebuildable corolla error
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, NoReturn, TypeVar, cast

import grpc

from corolla.core import (
    AggregationError,
    AppLoadError,
    CodecError,
    ConfigError,
    CorollaError,
    ErrorCode,
    ExecutionError,
    MessageError,
    NotEnoughNodesError,
    PermissionDeniedError,
    RecordError,
)

__all__ = [
    "ERROR_CODE_KEY",
    "TransportError",
    "abort",
    "error_from_code",
    "error_from_rpc",
    "iter_rpc",
    "status_for",
    "translate_rpc_errors",
]

T = TypeVar("T")

#: Trailing metadata key carrying the decimal corolla ErrorCode of a failed call.
ERROR_CODE_KEY = "corolla-error-code"

_S = grpc.StatusCode
STATUS_FOR_CODE: dict[ErrorCode, grpc.StatusCode] = {
    ErrorCode.UNKNOWN: _S.UNKNOWN,
    ErrorCode.CLIENT_APP_RAISED: _S.UNKNOWN,
    ErrorCode.MESSAGE_UNAVAILABLE: _S.NOT_FOUND,
    ErrorCode.REPLY_UNAVAILABLE: _S.NOT_FOUND,
    ErrorCode.NODE_UNAVAILABLE: _S.UNAVAILABLE,
    ErrorCode.TIMEOUT: _S.DEADLINE_EXCEEDED,
    ErrorCode.NO_HANDLER: _S.UNIMPLEMENTED,
    ErrorCode.INVALID_REPLY: _S.INVALID_ARGUMENT,
    ErrorCode.WORKER_CRASHED: _S.INTERNAL,
    ErrorCode.CONFIG: _S.INVALID_ARGUMENT,
    ErrorCode.RECORD: _S.INVALID_ARGUMENT,
    ErrorCode.CODEC: _S.INVALID_ARGUMENT,
    ErrorCode.MESSAGE: _S.INVALID_ARGUMENT,
    ErrorCode.APP_LOAD: _S.FAILED_PRECONDITION,
    ErrorCode.MISSING_EXTRA: _S.FAILED_PRECONDITION,
    ErrorCode.AGGREGATION: _S.INVALID_ARGUMENT,
    ErrorCode.NOT_ENOUGH_NODES: _S.FAILED_PRECONDITION,
    ErrorCode.EXECUTION: _S.INTERNAL,
    ErrorCode.NOT_FOUND: _S.NOT_FOUND,
    ErrorCode.CONFLICT: _S.FAILED_PRECONDITION,
    ErrorCode.UNAUTHENTICATED: _S.UNAUTHENTICATED,
    ErrorCode.STORAGE: _S.INTERNAL,
    ErrorCode.TRANSPORT: _S.UNAVAILABLE,
    ErrorCode.PERMISSION_DENIED: _S.PERMISSION_DENIED,
}

#: Errors rebuilt as their own class on the calling side (their constructor takes the
#: message alone).
_REBUILDABLE: dict[ErrorCode, type[CorollaError]] = {
    cls.code: cls
    for cls in (
        ConfigError,
        RecordError,
        CodecError,
        MessageError,
        AppLoadError,
        AggregationError,
        NotEnoughNodesError,
        ExecutionError,
        PermissionDeniedError,
    )
}

#: Statuses after which the same call may succeed if retried with backoff.
_RETRYABLE = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED"})


class TransportError(CorollaError, ConnectionError):
    """A gRPC call failed: the peer is unreachable, the stream broke, credentials were
    refused, or the peer answered with a status that names no rebuildable corolla error.

    Attributes
    ----------
    status
        The gRPC status code's name, e.g. ``"UNAVAILABLE"``.
    code
        The corolla error code the peer sent, else ``TIMEOUT`` for an expired deadline
        and ``UNKNOWN`` otherwise.
    """

    def __init__(
        self, message: str, *, status: str = "UNKNOWN", code: ErrorCode = ErrorCode.UNKNOWN
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code

    @property
    def retryable(self) -> bool:
        """True if the call may succeed when repeated later (reconnect with backoff)."""
        return self.status in _RETRYABLE

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_transport_error, (str(self), self.status, int(self.code)))


def _rebuild_transport_error(message: str, status: str, code: int) -> TransportError:
    return TransportError(message, status=status, code=ErrorCode(code))


def status_for(error: CorollaError | ErrorCode) -> grpc.StatusCode:
    """The gRPC status a failure with this error (or code) ends a call with."""
    if isinstance(error, TransportError):
        try:
            return grpc.StatusCode[error.status]
        except KeyError:
            return grpc.StatusCode.UNKNOWN
    code = error.code if isinstance(error, CorollaError) else error
    return STATUS_FOR_CODE.get(code, grpc.StatusCode.UNKNOWN)


def abort(context: grpc.ServicerContext, error: CorollaError) -> NoReturn:
    """End the current call with ``error``: its status, message and code trailer.

    Raises
    ------
    Exception
        Always: gRPC's own exception that ends the handler.
    """
    context.set_trailing_metadata(((ERROR_CODE_KEY, str(int(error.code))),))
    context.abort(status_for(error), str(error))


def _trailer_code(call: grpc.Call) -> ErrorCode | None:
    for key, value in call.trailing_metadata() or ():
        if key == ERROR_CODE_KEY:
            try:
                return ErrorCode(int(value))
            except ValueError:  # not a number, or a code from a newer peer
                return None
    return None


def error_from_rpc(exc: grpc.RpcError) -> CorollaError:
    """The corolla error a failed call stands for (raise it ``from exc``)."""
    # The errors of calls are also ``grpc.Call`` objects, which the type stubs cannot say.
    if not all(hasattr(exc, a) for a in ("code", "details", "trailing_metadata")):
        return TransportError(f"gRPC call failed: {exc!r}")
    call = cast(grpc.Call, exc)
    status = call.code()
    status_name = status.name if status is not None else "UNKNOWN"
    details = call.details() or f"gRPC call failed with status {status_name}"
    code = _trailer_code(call)
    if code is not None and code in _REBUILDABLE:
        return _REBUILDABLE[code](details)
    if code is None:
        code = ErrorCode.TIMEOUT if status_name == "DEADLINE_EXCEEDED" else ErrorCode.UNKNOWN
    return TransportError(f"{status_name}: {details}", status=status_name, code=code)


def error_from_code(code: int, reason: str) -> CorollaError:
    """The corolla error a peer reported as a code and a reason inside a response (a
    refused reply on ``Fleet.SendReplies``): what :func:`error_from_rpc` gives for a call
    that failed with that code's status and trailer."""
    try:
        known = ErrorCode(code)
    except ValueError:  # a code from a newer peer
        known = ErrorCode.UNKNOWN
    if known in _REBUILDABLE:
        return _REBUILDABLE[known](reason)
    status = STATUS_FOR_CODE.get(known, grpc.StatusCode.UNKNOWN).name
    return TransportError(f"{status}: {reason}", status=status, code=known)


@contextlib.contextmanager
def translate_rpc_errors() -> Iterator[None]:
    """Turn a ``grpc.RpcError`` raised inside the block into a corolla error.

    Raises
    ------
    CorollaError
        :func:`error_from_rpc` of the gRPC error, ``from`` it.
    """
    try:
        yield
    except grpc.RpcError as exc:
        raise error_from_rpc(exc) from exc


def iter_rpc(responses: Iterator[T]) -> Iterator[T]:
    """Iterate a streaming call's responses, translating gRPC errors as they surface.

    Raises
    ------
    CorollaError
        :func:`error_from_rpc` of the gRPC error, ``from`` it.
    """
    with translate_rpc_errors():
        yield from responses
