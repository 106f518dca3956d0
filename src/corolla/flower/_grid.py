"""Flower's ``Grid`` over Corolla's: any Flower ServerApp, workflow or strategy, of the
Message API or the legacy one, drives Corolla's nodes, simulated or deployed.

Flower's strategies talk to their grid through ``get_node_ids`` and ``send_and_receive``;
both map to Corolla's grid one to one. ``push_messages`` sends and stamps each Flower
message with the id Corolla gave it, as Flower's own grids do. ``pull_messages`` differs:
Flower's returns the replies that arrived so far, and a ServerApp polls it; Corolla's
grids deliver replies as they arrive, and a simulation runs the ClientApps only when they
are asked for, so ``pull_messages`` waits for the replies to the ids it is given. A loop
that polls until every reply is in ends after its first call.

Flower's legacy ``Server`` asks each client from a thread of its own, one message per
``send_and_receive``. Corolla's grids send and receive a batch at a time, so such calls
are gathered: a call with one message waits :data:`GATHER_S` for the calls made at the
same moment, and they go out as one batch, each call getting the replies to its own
messages. A call with several messages (the Message API's strategies, the workflows)
goes out at once.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterable, Mapping

from flwr import app as flwr_app
from flwr.serverapp import Grid as _FlowerGrid
from flwr.supercore.run import Run

from corolla.core import Message, MessageError, RecordDict, UserConfigValue
from corolla.server import Grid

from ._messages import message_to_flower
from ._records import record_dict_from_flower

__all__ = ["GATHER_S", "FlowerGrid"]

#: How long a one-message ``send_and_receive`` waits for the calls made with it.
GATHER_S = 0.02


class _Request:
    """One ``send_and_receive`` call, waiting for the batch it went out in."""

    def __init__(self, messages: list[flwr_app.Message], timeout: float | None) -> None:
        self.messages = messages
        self.timeout = timeout
        self.replies: list[flwr_app.Message] = []
        self.error: BaseException | None = None
        self.done = threading.Event()


class FlowerGrid(_FlowerGrid):
    """A Flower ``Grid`` (``flwr.serverapp.Grid``) that sends through a Corolla
    :class:`~corolla.server.Grid`.

    Parameters
    ----------
    grid
        The Corolla grid of the run.
    run_config
        The run's config, which Flower's ``Run`` carries as its ``override_config``.
    """

    def __init__(self, grid: Grid, run_config: Mapping[str, UserConfigValue]) -> None:
        self._grid = grid
        run = Run.create_empty(run_id=grid.run_id)
        run.override_config = dict(run_config)
        self._run = run
        #: Each batch of replies received: (group id, message type, the nodes that
        #: answered, the nodes that replied with an error).
        self.batches: list[tuple[str, str, frozenset[int], frozenset[int]]] = []
        self._lock = threading.Lock()
        self._waiting: list[_Request] = []
        self._leading = False

    def set_run(self, run: Run) -> None:
        if not isinstance(run, Run):
            raise TypeError(f"set_run takes a flwr Run, got {type(run).__name__}")
        if run.run_id != self._grid.run_id:
            raise ValueError(f"this grid serves run {self._grid.run_id}, not run {run.run_id}")
        self._run = run

    @property
    def run(self) -> Run:
        return dataclasses.replace(self._run)

    def create_message(
        self,
        content: flwr_app.RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> flwr_app.Message:
        return flwr_app.Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> list[int]:
        return self._grid.node_ids()

    def push_messages(self, messages: Iterable[flwr_app.Message]) -> list[str]:
        flower = list(messages)
        contents: dict[int, RecordDict] = {}
        ids = self._grid.send([_outgoing(message, contents) for message in flower])
        for message, message_id in zip(flower, ids, strict=True):
            # Flower's Metadata has no setter for the id its grids assign.
            message.metadata.__dict__["_message_id"] = message_id
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> list[flwr_app.Message]:
        return [flower for _, flower in self._incoming(self._grid.receive(list(message_ids)))]

    def send_and_receive(
        self, messages: Iterable[flwr_app.Message], *, timeout: float | None = None
    ) -> list[flwr_app.Message]:
        request = _Request(list(messages), timeout)
        with self._lock:
            self._waiting.append(request)
            lead = not self._leading
            self._leading = True
        if lead:
            self._lead(gather=len(request.messages) == 1)
        request.done.wait()
        if request.error is not None:
            raise request.error
        return request.replies

    def _lead(self, gather: bool) -> None:
        """Send the waiting calls' messages as batches until none waits."""
        if gather:
            time.sleep(GATHER_S)
        while True:
            with self._lock:
                batch, self._waiting = self._waiting, []
                if not batch:
                    self._leading = False
                    return
            self._send_batch(batch)

    def _send_batch(self, batch: list[_Request]) -> None:
        try:
            ids = self.push_messages([m for request in batch for m in request.messages])
            owners = iter(ids)
            owner = {next(owners): request for request in batch for _ in request.messages}
            timeouts = [request.timeout for request in batch]
            timeout = None if None in timeouts else max(t for t in timeouts if t is not None)
            for reply, flower in self._incoming(self._grid.receive(ids, timeout)):
                owner[reply.metadata.reply_to_message_id].replies.append(flower)
        except BaseException as exc:
            for request in batch:
                request.error = exc
        finally:
            for request in batch:
                request.done.set()

    def _incoming(self, replies: Iterable[Message]) -> list[tuple[Message, flwr_app.Message]]:
        """Each reply with its Flower conversion; the nodes that answered and failed go
        into :attr:`batches`. Replies are converted as the grid yields them, while the
        nodes still work on the others."""
        nodes: dict[tuple[str, str], tuple[set[int], set[int]]] = {}
        converted = []
        for reply in replies:
            key = (reply.metadata.group_id, reply.metadata.message_type)
            answered, failed = nodes.setdefault(key, (set(), set()))
            (failed if reply.has_error() else answered).add(reply.metadata.src_node_id)
            converted.append((reply, message_to_flower(reply)))
        self.batches.extend(
            (group, message_type, frozenset(answered), frozenset(failed))
            for (group, message_type), (answered, failed) in nodes.items()
        )
        return converted


def _outgoing(message: flwr_app.Message, contents: dict[int, RecordDict]) -> Message:
    """The Corolla message a ServerApp's Flower message asks to send.

    Messages of one push that hold the same Flower ``RecordDict`` (a strategy sends one
    model to every node it samples) get the same Corolla one, converted once, which
    Corolla's grids then ship once. ``contents`` maps the ``id`` of each Flower content
    converted in this push, all alive until the push ends, to its conversion.
    """
    metadata = message.metadata
    if metadata.reply_to_message_id:
        raise MessageError(
            f"a ServerApp sends new messages, not replies (this one replies to "
            f"{metadata.reply_to_message_id!r})"
        )
    if message.has_error():
        raise MessageError("a ServerApp sends messages with content, not errors")
    content = contents.get(id(message.content))
    if content is None:
        content = contents[id(message.content)] = record_dict_from_flower(message.content)
    return Message(
        content,
        dst_node_id=int(metadata.dst_node_id),
        message_type=metadata.message_type,
        group_id=metadata.group_id,
        ttl=float(metadata.ttl),
    )
