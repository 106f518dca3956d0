"""How the link's servicers are registered, and how their failures reach callers.

**Errors.** A handler wrapped in :func:`servicer_errors` (or its stream and asyncio
forms) ends its call with the status of the corolla error it raised, its message
redacted by the servicer (no paths of the link's machine) and cut to
:data:`MAX_DETAILS` characters (it may quote a request), and the error's stable code
in the trailing metadata; any other exception is logged and ends the call with
``INTERNAL`` and no more than its type, except the ``grpc.RpcError`` a request stream
raises when its caller cancelled it, which is no failure of the link's.

**Requests that do not parse** are refused with ``INVALID_ARGUMENT`` and the reason.

gRPC's own handling of a request that fails to deserialize is an ``INTERNAL`` status with
"Exception deserializing request!", which reads as a bug of the link and names neither
the method nor what was wrong. Here the generated servicers are registered through
:func:`add_servicer`, whose deserializers hand a :class:`MalformedRequest` to the
handler instead of raising; :func:`reject_malformed` (called by the handlers' error
wrappers) turns it into a :class:`~corolla.core.MessageError` naming both.

The same registration lets a handler answer with a response already serialized: a
``bytes`` response goes to the wire as it is. The link serves the messages it pushes
to nodes this way, assembled from stored bytes instead of parsed and serialized again,
and the chunks of array payloads. Uploaded chunks are read by
``transport._framing.parse_chunk``, without copying their data, instead of the
generated class.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Protocol, TypeVar

import grpc
from google.protobuf.message import DecodeError

from corolla.core import CorollaError, MessageError
from corolla.transport import ERROR_CODE_KEY, parse_chunk, status_for, transfer_pb2

__all__ = [
    "MAX_DETAILS",
    "MalformedRequest",
    "Redacting",
    "add_servicer",
    "aio_servicer_errors",
    "aio_stream_errors",
    "bounded",
    "caller_text",
    "reject_malformed",
    "servicer_errors",
    "stream_errors",
]

_log = logging.getLogger("corolla.runtime.link")

S = TypeVar("S")
F = TypeVar("F", bound=Callable[..., Any])


class MalformedRequest:
    """What a handler receives in place of a request that did not parse."""

    def __init__(self, method: str, reason: str) -> None:
        self.method = method
        self.reason = reason

    def error(self) -> MessageError:
        return MessageError(
            f"malformed request to {self.method}: not a valid protobuf message ({self.reason})"
        )


def reject_malformed(request: Any) -> Any:
    """``request`` itself, or, for a request stream, a stream that raises at a malformed item.

    Raises
    ------
    MessageError
        If ``request`` did not parse.
    """
    if isinstance(request, MalformedRequest):
        raise request.error()
    if isinstance(request, Iterator):
        return _checked(request)
    if isinstance(request, AsyncIterator):
        return _checked_async(request)
    return request


def _checked(requests: Iterator[Any]) -> Iterator[Any]:
    for request in requests:
        if isinstance(request, MalformedRequest):
            raise request.error()
        yield request


async def _checked_async(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        if isinstance(request, MalformedRequest):
            raise request.error()
        yield request


def _tolerant(deserialize: Callable[[bytes], Any], method: str) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except (DecodeError, ValueError, TypeError) as exc:
            return MalformedRequest(method, str(exc) or type(exc).__name__)

    return parse


def _passing_bytes(serialize: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
    def serialized(response: Any) -> bytes:
        return response if isinstance(response, bytes) else serialize(response)

    return serialized


def _tolerant_handler(handler: Any, method: str) -> Any:
    if handler is None:
        return handler
    changes = {}
    if handler.request_deserializer is not None:
        deserialize = handler.request_deserializer
        if deserialize == transfer_pb2.Chunk.FromString:  # uploads: data not copied
            deserialize = parse_chunk
        changes["request_deserializer"] = _tolerant(deserialize, method)
    if handler.response_serializer is not None:
        changes["response_serializer"] = _passing_bytes(handler.response_serializer)
    # gRPC's method handlers are named tuples.
    return handler._replace(**changes)


class _TolerantGenericHandler(grpc.GenericRpcHandler):
    def __init__(self, inner: grpc.GenericRpcHandler) -> None:
        self._inner = inner

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Any:
        handler = self._inner.service(handler_call_details)
        method = getattr(handler_call_details, "method", "") or "?"
        return _tolerant_handler(handler, method)


class _Registrar:
    """Stands for the server in a generated ``add_*Servicer_to_server`` function."""

    def __init__(self, server: grpc.Server | grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: tuple[grpc.GenericRpcHandler, ...]) -> None:
        self._server.add_generic_rpc_handlers(tuple(_TolerantGenericHandler(h) for h in handlers))

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        tolerant = {
            name: _tolerant_handler(handler, f"/{service}/{name}")
            for name, handler in handlers.items()
        }
        self._server.add_registered_method_handlers(service, tolerant)


def add_servicer(
    add: Callable[[S, Any], None], servicer: S, server: grpc.Server | grpc.aio.Server
) -> None:
    """Register ``servicer`` on ``server`` with a generated ``add`` function, so that its
    handlers receive a :class:`MalformedRequest` for a request that does not parse, and
    may return (or yield) a response as its serialized ``bytes``."""
    add(servicer, _Registrar(server))


class Redacting(Protocol):
    """A servicer whose error details are redacted before they reach a caller."""

    def redact(self, text: str) -> str:
        """``text`` without what it may not tell a caller (the link's paths)."""
        ...


#: Longest text of an error told to a caller or kept in a run's events. An error message
#: may quote what the caller sent (a hash, a message id), which may be megabytes long:
#: gRPC refuses status details beyond its metadata limit (16 KiB), so the caller would
#: read ``RESOURCE_EXHAUSTED`` instead of the reason, and a run's events would keep them.
MAX_DETAILS = 1000


def bounded(text: str, limit: int = MAX_DETAILS) -> str:
    """``text``, cut to ``limit`` characters with a note of its length if longer."""
    if len(text) <= limit:
        return text
    note = f"... ({len(text)} characters in all)"
    return text[: max(limit - len(note), 0)] + note


def caller_text(servicer: Redacting, exc: BaseException) -> str:
    """The message of ``exc`` as a caller may read it: redacted, and :func:`bounded`."""
    return bounded(servicer.redact(str(exc)))


@dataclasses.dataclass(frozen=True)
class _Failure:
    """How a call that raised ends: a status, the details a caller reads, a code trailer."""

    status: grpc.StatusCode
    details: str
    code: int | None


def _failure(servicer: Redacting, method: str, exc: BaseException) -> _Failure:
    """The end of a call that raised ``exc``. A corolla error keeps its status and code,
    its message redacted; anything else is logged with its traceback here and told to
    the caller as an internal error only (its text may name anything)."""
    if isinstance(exc, CorollaError):
        return _Failure(status_for(exc), caller_text(servicer, exc), int(exc.code))
    if isinstance(exc, grpc.RpcError):
        # Raised by a request stream whose caller cancelled it, or whose deadline passed:
        # the caller went away, which is no failure of the link's.
        _log.info("%s: the caller ended the call before it was done", method)
        return _Failure(grpc.StatusCode.CANCELLED, "the call ended before it was done", None)
    _log.error("%s failed", method, exc_info=exc)
    details = f"internal error in {method} ({type(exc).__name__}); the link's log has the details"
    return _Failure(grpc.StatusCode.INTERNAL, details, None)


def _end(context: grpc.ServicerContext, failure: _Failure) -> None:
    if failure.code is not None:
        context.set_trailing_metadata(((ERROR_CODE_KEY, str(failure.code)),))
    context.abort(failure.status, failure.details)


async def _end_async(context: grpc.aio.ServicerContext[Any, Any], failure: _Failure) -> None:
    if failure.code is not None:
        context.set_trailing_metadata(((ERROR_CODE_KEY, str(failure.code)),))
    await context.abort(failure.status, failure.details)


# The wrappers end the call outside their ``except`` blocks: an exception raised there
# would carry the handler's exception, its traceback, and the frames holding the request,
# in a cycle that only the garbage collector frees, and a link collects rarely
# (``corolla.tuning.quiet_garbage_collector``): refused requests of megabytes piled up.


def servicer_errors(method: F) -> F:
    """End a unary call with the status of a corolla error it raised (others: INTERNAL);
    a request that did not parse ends it with ``INVALID_ARGUMENT``
    (see :func:`reject_malformed`). The servicer redacts the details (:class:`Redacting`)."""

    @functools.wraps(method)
    def wrapper(self: Redacting, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, reject_malformed(request), context)
        except Exception as exc:
            failure = _failure(self, method.__name__, exc)
        del request
        _end(context, failure)

    return wrapper  # type: ignore[return-value]


def stream_errors(method: F) -> F:
    """:func:`servicer_errors` for handlers that return a stream of responses."""

    @functools.wraps(method)
    def wrapper(self: Redacting, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            yield from method(self, reject_malformed(request), context)
            return
        except Exception as exc:
            failure = _failure(self, method.__name__, exc)
        del request
        _end(context, failure)

    return wrapper  # type: ignore[return-value]


def aio_servicer_errors(method: F) -> F:
    """:func:`servicer_errors` for the coroutine handlers of a ``grpc.aio`` server."""

    @functools.wraps(method)
    async def wrapper(
        self: Redacting, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Any:
        try:
            return await method(self, reject_malformed(request), context)
        except Exception as exc:
            failure = _failure(self, method.__name__, exc)
        del request
        await _end_async(context, failure)

    return wrapper  # type: ignore[return-value]


def aio_stream_errors(method: F) -> F:
    """:func:`stream_errors` for the async generator handlers of a ``grpc.aio`` server."""

    @functools.wraps(method)
    async def wrapper(
        self: Redacting, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        try:
            async for response in method(self, reject_malformed(request), context):
                yield response
            return
        except Exception as exc:
            failure = _failure(self, method.__name__, exc)
        del request
        await _end_async(context, failure)

    return wrapper  # type: ignore[return-value]
