"""A node is online while it holds a ``Receive`` stream open: one whose stream ends is
marked offline at once.

Missed heartbeats alone notice a node that is gone only after a few intervals (68 s
with the default one), and a round waits on its messages that long. A node's
``Receive`` stream ends as soon as its connection does (a node killed with SIGKILL, a
machine gone: the kernel or gRPC's keepalive closes it), so the link marks the node
offline then, and the state answers its open messages with ``NODE_UNAVAILABLE``; the
round goes on with the other replies. A node that reconnects registers again, which
puts it back online.

A node may open its next stream before the link has noticed the end of the previous
one: only the end of the last stream open counts, and a node marked offline while a
newer stream of its opened is put back online (see :meth:`Presence.opened`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from corolla.core import Event
from corolla.state import RunStatus

from .._audit import audit
from ._resources import LinkResources
from ._wakeups import replies_key

__all__ = ["Presence"]

_log = logging.getLogger("corolla.runtime.link")


class Presence:
    """The ``Receive`` streams each node holds open, and what their ends do.

    Thread-safe: streams open and end on the Fleet server's event loop, and the state
    is written on its threads.

    Parameters
    ----------
    shared
        The link's state and wake-ups.
    """

    def __init__(self, shared: LinkResources) -> None:
        self._shared = shared
        self._lock = threading.Lock()
        self._open: dict[int, int] = {}
        # Nodes marked offline by the end of their last stream, until they open another.
        self._marked: set[int] = set()

    def opened(self, node_id: int) -> bool:
        """A stream of ``node_id`` opened; True if the node was marked offline since its
        last one ended, and must be put back online (:meth:`back_online`)."""
        with self._lock:
            self._open[node_id] = self._open.get(node_id, 0) + 1
            if node_id in self._marked:
                self._marked.discard(node_id)
                return True
            return False

    def closed(self, node_id: int) -> bool:
        """A stream of ``node_id`` ended; True if it was the node's last one open, and
        the node is to be marked offline (:meth:`disconnected`)."""
        with self._lock:
            left = self._open.get(node_id, 0) - 1
            if left > 0:
                self._open[node_id] = left
                return False
            self._open.pop(node_id, None)
            return True

    def disconnected(self, node_id: int) -> None:
        """Mark ``node_id`` offline (its open messages answered with ``NODE_UNAVAILABLE``)
        unless it opened a stream meanwhile, and wake the ServerApps waiting for replies.
        Blocks on the state; never raises."""
        with self._lock:
            if self._open.get(node_id):
                return
        state = self._shared.state
        try:
            state.mark_node_offline(node_id)
        except Exception:  # the state is closing, or the node is unknown
            _log.debug("could not mark node %d offline", node_id, exc_info=True)
            return
        with self._lock:
            # Opened between the check and the write: its opening did not see the mark.
            restore = bool(self._open.get(node_id))
            if not restore:
                self._marked.add(node_id)
        if restore:
            self.back_online(node_id)
            return
        _log.info("node %d disconnected: marked offline", node_id)
        audit(self._shared.audit, "node.leave", {"node_id": node_id, "why": "disconnected"})
        try:
            state.append_event(
                Event("node.leave", 0, node_id=node_id, data={"why": "disconnected"})
            )
            live = [
                run.run_id
                for status in (RunStatus.STARTING, RunStatus.RUNNING)
                for run in state.list_runs(status=status)
            ]
        except Exception:
            _log.debug("node %d's leaving not recorded", node_id, exc_info=True)
            return
        # The error replies stored for its messages: the runs waiting for them go on.
        self._shared.signals.notify(_reply_keys(live))

    def back_online(self, node_id: int) -> None:
        """Put ``node_id`` back online (a stream of it opened while it was being marked
        offline). Blocks on the state; never raises."""
        try:
            self._shared.state.heartbeat(node_id)
        except Exception:
            _log.debug("could not put node %d back online", node_id, exc_info=True)


def _reply_keys(run_ids: Iterable[int]) -> list[tuple[str, int]]:
    return [replies_key(run_id) for run_id in run_ids]
