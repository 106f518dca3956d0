"""Calls meant for a Flower SuperLink, answered with what to use instead.

A user may point Flower's own tools at a Corolla link: Flower's CLI at its control
address, a Flower SuperNode at its fleet address. Flower's services live under the
protobuf package ``flwr.proto``, which the link does not serve; gRPC would end such a
call with a bare ``UNIMPLEMENTED``. :class:`FlowerCallRefusal`, registered on a port
after Corolla's own services, ends it with ``UNIMPLEMENTED`` and details that say this
is a Corolla link and which ``corolla`` command does the job.

Only calls over gRPC reach it: a client that speaks another protocol to the port (plain
HTTP/1.1) is dropped by gRPC before any handler runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc

__all__ = [
    "FLOWER_SERVICES",
    "FlowerCallRefusal",
    "control_refusal",
    "fleet_refusal",
]

#: The method paths of Flower's gRPC services start so (``/flwr.proto.Control/StartRun``).
FLOWER_SERVICES = "/flwr.proto."


def _shown(address: str) -> str:
    """``address`` as a client names it: a wildcard host (``0.0.0.0``, ``[::]``) is not
    one to connect to."""
    host, _, port = address.rpartition(":")
    return f"HOST:{port}" if host in ("", "0.0.0.0", "[::]", "::") else address


def control_refusal(address: str) -> str:
    """What a Flower call to the control address at ``address`` is told."""
    link = _shown(address)
    return (
        "this is a Corolla link, not a Flower SuperLink: Flower's CLI (flwr run, flwr ls, "
        "flwr log, flwr stop, flwr login) cannot drive it. Submit a Flower app with "
        f"`corolla run DIR --link {link}`; list, follow, stop and download runs with "
        f"`corolla ls --link {link}`, `corolla log RUN --link {link}`, "
        f"`corolla stop RUN --link {link}` and `corolla pull RUN --link {link}`"
    )


def fleet_refusal(address: str) -> str:
    """What a Flower call to the fleet address at ``address`` is told."""
    return (
        "this is a Corolla link, not a Flower SuperLink: a Flower SuperNode cannot join "
        f"it. Start a Corolla node instead, `corolla node --link {_shown(address)}`; it "
        "runs Flower ClientApps unmodified"
    )


class FlowerCallRefusal(grpc.GenericRpcHandler):
    """Ends every call to a ``flwr.proto`` service with ``UNIMPLEMENTED`` and
    ``details``; other methods it leaves to gRPC (None).

    Parameters
    ----------
    details
        What the caller is told, after the method it called.
    aio
        Whether the handler serves a ``grpc.aio`` server (its behaviours are coroutines).
    """

    def __init__(self, details: str, *, aio: bool = False) -> None:
        self._details = details
        self._aio = aio

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Any:
        method: Any = getattr(handler_call_details, "method", "")
        if isinstance(method, bytes):
            method = method.decode("utf-8", "replace")
        if not str(method).startswith(FLOWER_SERVICES):
            return None
        details = f"{method}: {self._details}"
        # A stream-stream handler reads nothing before it answers: it ends a call of any
        # kind, unary or streaming, whatever the client sends first.
        if self._aio:

            async def refuse_async(
                requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
            ) -> None:
                await context.abort(grpc.StatusCode.UNIMPLEMENTED, details)

            return grpc.stream_stream_rpc_method_handler(refuse_async)

        def refuse(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, details)

        return grpc.stream_stream_rpc_method_handler(refuse)
