"""Which nodes must hear that a run ended, until their ``Receive`` stream tells them.

Ending a run in the state answers its open messages with errors, but a node running
one of them would go on until its ClientApp returns (or hangs) and only then learn,
from the refusal of its reply, that nobody waits for it. So the link remembers which
nodes it handed messages of each live run to, and when the run ends, queues a
``RunEnded`` notice for each of them and wakes their ``Receive`` streams (see
``_fleet``), whichever service ended the run: Control's ``StopRun``, or the end of its
ServerApp process (``_runs``).
"""

from __future__ import annotations

import collections
import threading

from ._wakeups import Signals, node_key

__all__ = ["RunEnds"]

#: Ended runs remembered, for a message of one handed out while it ended.
_ENDED_LIMIT = 1024
#: Notices kept for a node that does not read them (it is offline, or its Receive stream
#: did not ask for them); the oldest go first.
_PENDING_LIMIT = 64


class RunEnds:
    """The nodes each live run was handed messages to, and the notices they are owed.

    Thread-safe: messages are handed out on the Fleet server's threads, runs end on
    Control's and on the ServerApp watchers'.

    Parameters
    ----------
    signals
        Where the ``Receive`` streams of the nodes owed a notice are woken.
    """

    def __init__(self, signals: Signals) -> None:
        self._signals = signals
        self._lock = threading.Lock()
        self._nodes: dict[int, set[int]] = {}
        self._ended: collections.OrderedDict[int, str] = collections.OrderedDict()
        self._pending: dict[int, collections.OrderedDict[int, str]] = {}

    def handed_out(self, node_id: int, run_ids: set[int]) -> None:
        """Node ``node_id`` was handed messages of ``run_ids``."""
        late = False
        with self._lock:
            for run_id in run_ids:
                reason = self._ended.get(run_id)
                if reason is None:
                    self._nodes.setdefault(run_id, set()).add(node_id)
                else:  # it ended while its message was being handed out
                    self._owe(node_id, run_id, reason)
                    late = True
        if late:
            self._signals.notify([node_key(node_id)])

    def ended(self, run_id: int, reason: str) -> list[int]:
        """Run ``run_id`` ended: owe a notice to every node it was handed messages to,
        and wake their streams. Returns those nodes' ids; a run told twice owes nothing
        more."""
        with self._lock:
            if run_id in self._ended:
                return []
            self._ended[run_id] = reason
            if len(self._ended) > _ENDED_LIMIT:
                self._ended.popitem(last=False)
            nodes = sorted(self._nodes.pop(run_id, ()))
            for node_id in nodes:
                self._owe(node_id, run_id, reason)
        if nodes:
            self._signals.notify([node_key(node_id) for node_id in nodes])
        return nodes

    def _owe(self, node_id: int, run_id: int, reason: str) -> None:
        pending = self._pending.setdefault(node_id, collections.OrderedDict())
        pending[run_id] = reason
        if len(pending) > _PENDING_LIMIT:
            pending.popitem(last=False)

    def take(self, node_id: int) -> list[tuple[int, str]]:
        """The notices owed to ``node_id`` (run id, reason), oldest first; they are no
        longer owed."""
        with self._lock:
            pending = self._pending.pop(node_id, None)
        return list(pending.items()) if pending else []
