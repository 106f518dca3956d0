"""A node's reply stream: ``Fleet.SendReplies``, kept open beside its ``Receive`` stream.

``SendReply`` is a call per reply, and setting a call up costs the link more than the
reply itself when the model is small: a round of a thousand nodes is a thousand calls.
On one stream kept open for the session a reply is a message written and its
acknowledgement one read, each as durable as the call's answer.
"""

from __future__ import annotations

import queue
from typing import Any

from corolla.core import ErrorCode
from corolla.transport import (
    TransportError,
    error_from_code,
    fleet_pb2,
    fleet_pb2_grpc,
    message_pb2,
    translate_rpc_errors,
)

__all__ = ["ReplyStream"]


class ReplyStream:
    """Sends replies one at a time on a ``SendReplies`` stream and waits for each answer.

    Parameters
    ----------
    stub
        The link's Fleet service.
    metadata
        The node's call metadata (its bearer token).
    """

    def __init__(self, stub: fleet_pb2_grpc.FleetStub, metadata: Any) -> None:
        self._requests: queue.SimpleQueue[fleet_pb2.SendReplyRequest | None] = queue.SimpleQueue()
        self._call = stub.SendReplies(iter(self._requests.get, None), metadata=metadata)

    def send(self, reply: message_pb2.Message) -> str:
        """Send ``reply``; return the id the link gave it once it is durable.

        Raises
        ------
        CorollaError
            The error the link refused the reply with (the stream goes on), or, for a
            broken stream, a retryable :class:`~corolla.transport.TransportError`.
        """
        self._requests.put(fleet_pb2.SendReplyRequest(message=reply))
        with translate_rpc_errors():
            response = next(self._call, None)
        if response is None:
            raise TransportError(
                "UNAVAILABLE: the link ended the reply stream",
                status="UNAVAILABLE",
                code=ErrorCode.TRANSPORT,
            )
        if response.WhichOneof("outcome") == "error":
            raise error_from_code(response.error.code, response.error.reason)
        return response.message_id

    def close(self) -> None:
        """End the stream (a reply being sent fails). Idempotent."""
        self._requests.put(None)
        self._call.cancel()
