"""One connection of a node to the link, from its registration to its end.

The node's connection thread reads the session's ``Receive`` stream; its message
thread downloads, uploads and replies through the same session, and ends it when a
call fails in a way that calls for reconnecting (:meth:`Session.abort`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from corolla.transport import fleet_pb2, fleet_pb2_grpc, iter_rpc

from ._reply_stream import ReplyStream

__all__ = ["Session"]


class Session:
    """The stub, identity and streams of one connection.

    Parameters
    ----------
    stub
        The link's Fleet service on this connection's channel.
    node_id
        The id the link registered the node under.
    metadata
        The node's call metadata (its bearer token).
    """

    def __init__(self, stub: fleet_pb2_grpc.FleetStub, node_id: int, metadata: Any) -> None:
        self.stub = stub
        self.node_id = node_id
        self.metadata = metadata
        self.replies = ReplyStream(stub, metadata)
        self._lock = threading.Lock()
        self._call: Any = None
        self._ended = False

    @property
    def ended(self) -> bool:
        """True once the session was aborted or closed: nothing more goes through it."""
        return self._ended

    def receive(self) -> Iterator[fleet_pb2.ReceiveResponse]:
        """The ``Receive`` stream: messages, and notices of runs that ended.

        Raises
        ------
        CorollaError
            The translation of the stream's failure.
        """
        call = self.stub.Receive(fleet_pb2.ReceiveRequest(run_notices=True), metadata=self.metadata)
        with self._lock:
            self._call = call
            if self._ended:  # aborted while the call was being opened
                call.cancel()
        return iter_rpc(call)

    def abort(self) -> None:
        """End the session from any thread: its ``Receive`` stream ends, and the node
        connects again."""
        with self._lock:
            self._ended = True
            call = self._call
        if call is not None:
            call.cancel()

    def close(self) -> None:
        """End the session and its reply stream. Idempotent."""
        self.abort()
        self.replies.close()
