"""GrpcGrid: the Grid a ServerApp sees in deployment, talking to its link over gRPC.

The ServerApp runs in a child process of the link. Sending a batch encodes each distinct
array once (the round's global model is one payload whatever the number of nodes),
uploads only what the link lacks, then stores the messages; the link pushes them to the
nodes at once. Replies stream back as the link stores them, and the arrays they carry
are downloaded as they are needed.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any

import grpc

from corolla.core import (
    ArrayRecord,
    Error,
    Event,
    Message,
    NotEnoughNodesError,
    UserConfigValue,
    new_message_id,
)
from corolla.server import Grid, RunResult, node_order
from corolla.state import DirectoryBlobStore, MemoryBlobStore
from corolla.telemetry import RoundTraces, Tracing
from corolla.transport import (
    EncodedArray,
    array_entries,
    bearer_metadata,
    event_to_proto,
    iter_rpc,
    message_from_proto,
    message_pb2,
    message_to_proto,
    serverappio_pb2,
    serverappio_pb2_grpc,
    translate_rpc_errors,
    user_config_from_proto,
)

from .._payloads import (
    ArrayCache,
    push_missing,
    with_chunk_frames,
)
from ._checkpoints import ArrayEncodings, LinkCheckpoints
from ._prefetch import prefetched

__all__ = ["GrpcGrid", "result_event_data"]

_log = logging.getLogger("corolla.runtime.grid")

#: Least seconds between two progress events of one batch of replies (the last reply of
#: a batch always has one).
_PROGRESS_INTERVAL_S = 1.0
#: Seconds between two ``nodes.waiting`` events while the number of nodes online stays
#: the same, and between two looks at it.
_WAITING_REPEAT_S = 30.0
_NODES_POLL_S = 0.1


def result_event_data(result: RunResult) -> tuple[dict[str, Any], dict[str, EncodedArray]]:
    """The JSON form of a ``run.result`` event: array references and the history dict,
    plus the encoded arrays to upload."""
    refs = []
    payloads: dict[str, EncodedArray] = {}
    arrays = result.arrays if result.arrays is not None else ArrayRecord()
    history = result.history
    for name, array in arrays.items():
        encoded = EncodedArray.from_array(array)
        payloads[encoded.sha256] = encoded
        refs.append({"name": name, "sha256": encoded.sha256, "size": encoded.size})
    data: dict[str, Any] = {"arrays": refs}
    if history is not None:
        data["history"] = history.to_dict()
    return data, payloads


def _arrays_size(message: message_pb2.Message) -> int:
    return sum(e.encoded_size for e in array_entries(message).values())


def _log_refused_release(count: int, call: grpc.Future[Any]) -> None:
    error = call.exception()
    if error is None or (
        isinstance(error, grpc.Call) and error.code() is grpc.StatusCode.CANCELLED
    ):
        return  # released, or the process is ending
    details = error.details() if isinstance(error, grpc.Call) else str(error)
    _log.warning("could not release %d messages: %s", count, details)


class GrpcGrid(Grid):
    """The nodes of run ``run_id``, reached through the link's ServerAppIo service.

    Parameters
    ----------
    channel
        A channel to the link's ServerAppIo address.
    run_id
        The run this grid serves.
    secret
        The run's secret, which the link gave the process.
    link_blobs
        The link's blob directory, where a ServerApp the link started reads the arrays
        of replies in place (see ``ArrayCache``); None downloads them all.
    tracing
        Makes each round a trace (see :class:`~corolla.telemetry.RoundTraces`) whose
        messages carry its context to the link and the nodes; none by default.

    The grid is a node directory for selection policies (``corolla.strategy``'s
    ``AttributeSelection`` and ``RecentlySeenSelection``): each :meth:`node_ids` call also fetches
    the online nodes' attributes (``corolla node --attributes``) and last heartbeat times,
    which :meth:`node_attributes` and :meth:`node_last_seen` answer from.

    As in a simulation, a message's reply is received once: at the end of each
    :meth:`receive`, the grid releases the messages whose replies it yielded, and the link
    deletes what only they named (a later :meth:`receive` of them is refused).
    """

    def __init__(
        self,
        channel: grpc.Channel,
        run_id: int,
        secret: str,
        link_blobs: str | os.PathLike[str] | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self._traces = RoundTraces(tracing or Tracing.off(), run_id)
        stub = serverappio_pb2_grpc.ServerAppIoStub(channel)
        self._stub = with_chunk_frames(stub, channel, "ServerAppIo")
        self._run_id = run_id
        self._metadata = bearer_metadata(secret)
        self._local = None if link_blobs is None else DirectoryBlobStore(link_blobs)
        self._arrays = self._array_cache()
        self._phases: dict[str, str] = {}
        self._encodings = ArrayEncodings()
        # Error replies to messages the link refused (see send), until received.
        self._undeliverable: dict[str, Message] = {}
        self._checkpoints = LinkCheckpoints(self._stub, self._metadata, self._encodings)
        # What the last node_ids() call learnt about each online node.
        self._directory: dict[int, serverappio_pb2.NodeSummary] = {}

    @property
    def run_id(self) -> int:
        return self._run_id

    def node_ids(self) -> list[int]:
        with translate_rpc_errors():
            response = self._stub.GetNodes(
                serverappio_pb2.GetNodesRequest(), metadata=self._metadata
            )
        self._directory = {node.node_id: node for node in response.nodes}
        configs = {
            node.node_id: user_config_from_proto(node.node_config) for node in response.nodes
        }
        return node_order(configs)

    def _summary(self, node_id: int) -> serverappio_pb2.NodeSummary | None:
        if node_id not in self._directory:
            self.node_ids()
        return self._directory.get(node_id)

    def node_attributes(self, node_id: int) -> dict[str, UserConfigValue]:
        """The attributes node ``node_id`` advertised; empty for a node not online."""
        summary = self._summary(node_id)
        return {} if summary is None else user_config_from_proto(summary.attributes)

    def node_last_seen(self, node_id: int) -> float | None:
        """When the link last heard from node ``node_id`` (``time.time()`` seconds), or
        None for a node not online."""
        summary = self._summary(node_id)
        return None if summary is None else summary.last_heartbeat_at

    def send(self, messages: Iterable[Message]) -> list[str]:
        cache = self._encodings.take()
        protos = []
        stamped = []
        payloads: dict[str, EncodedArray] = {}
        for message in self._traces.sending(list(messages)):
            stamped.append(message.with_metadata(run_id=self._run_id, src_node_id=0))
            proto, arrays = message_to_proto(stamped[-1], cache)
            payloads.update(arrays)
            protos.append(proto)
        if not protos:
            return []
        push_missing(self._stub.StatArrays, self._stub.PushArrays, payloads, self._metadata)
        with translate_rpc_errors():
            response = self._stub.PushMessages(
                serverappio_pb2.PushMessagesRequest(messages=protos), metadata=self._metadata
            )
        ids = list(response.message_ids)
        refused = iter(response.refused)
        for position, (message_id, proto) in enumerate(zip(ids, protos, strict=True)):
            if message_id:
                self._phases[message_id] = proto.metadata.message_type
                continue
            # Addressed to no node of the link: answered here, as the link would answer
            # a message to a node gone offline.
            error = next(refused)
            request = stamped[position].with_metadata(message_id=new_message_id())
            reply = Message(error=Error(error.code, error.reason), reply_to=request)
            ids[position] = request.metadata.message_id
            self._undeliverable[ids[position]] = reply
        return ids

    def receive(
        self, message_ids: Iterable[str], timeout: float | None = None
    ) -> Iterator[Message]:
        ids = list(message_ids)
        for message_id in [i for i in ids if i in self._undeliverable]:
            ids.remove(message_id)
            yield self._undeliverable.pop(message_id)
        if not ids:
            return
        phase = self._phases.get(ids[0], "")
        request = serverappio_pb2.PullRepliesRequest(message_ids=ids, timeout=timeout or 0.0)
        call = self._stub.PullReplies(request, metadata=self._metadata)
        protos = (proto for response in iter_rpc(call) for proto in response.messages)
        replies = prefetched(protos, self._fetch_arrays, _arrays_size, call.cancel)
        received: list[str] = []
        try:
            reported = time.monotonic()
            previous: set[str] = set()
            for done, proto in enumerate(replies, start=1):
                held = set(array_entries(proto))
                # The previous reply was folded when the caller asked for this one: keep
                # only what this one shares with it (often the same update from many nodes).
                for sha256 in previous - held:
                    self._arrays.blobs.delete(sha256)
                previous = held
                self._fetch_arrays(proto)  # again, in case the line above dropped a shared one
                reply = message_from_proto(proto, self._arrays)
                self._phases.pop(reply.metadata.reply_to_message_id, None)
                # A progress event is a durable write on the link: one a second at most, not
                # one a reply, which for a thousand nodes would be a thousand commits a round.
                if done == len(ids) or time.monotonic() - reported >= _PROGRESS_INTERVAL_S:
                    reported = time.monotonic()
                    self.emit(
                        Event(
                            "progress",
                            self._run_id,
                            data={"done": done, "total": len(ids), "phase": phase},
                        )
                    )
                received.append(reply.metadata.reply_to_message_id)
                self._traces.replied(reply)
                yield reply
        finally:
            replies.close()
            self._release(received)
        self._forget_arrays()

    def _release(self, message_ids: list[str]) -> None:
        """Tell the link these messages' replies were received, so it may delete what only
        they named. The call is not waited for: the link's commit stays off the round's
        path, and a failure costs only disk until the run ends (it is logged)."""
        if not message_ids:
            return
        request = serverappio_pb2.ReleaseMessagesRequest(message_ids=message_ids)
        future = self._stub.ReleaseMessages.future(request, metadata=self._metadata)
        future.add_done_callback(functools.partial(_log_refused_release, len(message_ids)))

    def _fetch_arrays(self, proto: message_pb2.Message) -> None:
        self._arrays.fetch({h: e.encoded_size for h, e in array_entries(proto).items()})

    def _forget_arrays(self) -> None:
        # Replies' arrays are folded as they arrive; keep none beyond the batch.
        self._arrays = self._array_cache()

    def _array_cache(self) -> ArrayCache:
        return ArrayCache(MemoryBlobStore(), self._stub.PullArrays, self._metadata, self._local)

    def emit(self, event: Event) -> None:
        self._traces.observe(event)
        proto = event_to_proto(event, 0)
        with translate_rpc_errors():
            self._stub.EmitEvents(
                serverappio_pb2.EmitEventsRequest(events=[proto]), metadata=self._metadata
            )

    @property
    def checkpoints(self) -> LinkCheckpoints:
        """The run's checkpoints, kept on the link."""
        return self._checkpoints

    def report_result(self, result: RunResult) -> None:
        """Keep the run's result on the link: its arrays as blobs, and a ``run.result``
        event naming them with the history, which ``corolla run``, ``corolla pull`` and
        :meth:`ControlClient.result <corolla.runtime.ControlClient.result>` read.

        Raises
        ------
        CorollaError
            If the link is unreachable.
        """
        data, payloads = result_event_data(result)
        push_missing(self._stub.StatArrays, self._stub.PushArrays, payloads, self._metadata)
        self.emit(Event("run.result", self._run_id, data=data))

    def wait_for_nodes(self, min_nodes: int, timeout: float | None = None) -> list[int]:
        """Wait until at least ``min_nodes`` nodes are online and return their ids.

        While it waits, it tells whoever follows the run: a ``nodes.waiting`` event
        (``connected``, ``needed``) at once, when the count of nodes changes, and every
        :data:`_WAITING_REPEAT_S` seconds otherwise; a ``nodes.ready`` event once enough
        are there. A run on a link without nodes is then not silent.

        Raises
        ------
        NotEnoughNodesError
            If fewer nodes are online when ``timeout`` expires.
        CorollaError
            If the link cannot be reached.
        """
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        reported: tuple[int, float] | None = None  # (count, when) of the last event
        while True:
            ids = self.node_ids()
            now = time.monotonic()
            if len(ids) >= min_nodes:
                break
            if deadline is not None and now >= deadline:
                raise NotEnoughNodesError(
                    f"{len(ids)} nodes available after {timeout} s, at least {min_nodes} needed"
                )
            if reported is None or _waiting_news(reported, len(ids), now):
                self.emit(
                    Event(
                        "nodes.waiting",
                        self._run_id,
                        data={"connected": len(ids), "needed": min_nodes},
                    )
                )
                reported = (len(ids), now)
            pause = _NODES_POLL_S if deadline is None else min(_NODES_POLL_S, deadline - now)
            time.sleep(max(pause, 0.0))
        if reported is not None:
            waited = time.monotonic() - started
            self.emit(
                Event("nodes.ready", self._run_id, data={"nodes": len(ids), "waited_s": waited})
            )
        return ids


def _waiting_news(reported: tuple[int, float], connected: int, now: float) -> bool:
    """Whether another ``nodes.waiting`` event is due: each is a durable write on the
    link, so a count that flaps costs one a second at most, and one that stays the same
    one every :data:`_WAITING_REPEAT_S` seconds."""
    count, when = reported
    if count != connected:
        return now - when >= _PROGRESS_INTERVAL_S
    return now - when >= _WAITING_REPEAT_S
