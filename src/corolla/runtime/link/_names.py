"""Blobs that clients hold by naming them, before a stored message names them.

A client tells the link of a blob before it stores a message naming it: ``StatArrays``
finds it stored, ``PushArrays`` stores it, or a message's content is stored ahead of the
message. Until the message is stored, nothing in the state names the blob, and a
collection (``_collection``) would delete it from under the client. So the link remembers
who named each blob and when (:class:`NamedBlobs`), and a collection leaves a named blob
alone for a grace period (``LinkLimits.named_grace_s``), or until the client's message
naming it is stored (the name is then *settled*: the state keeps the blob while it needs
it).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable

from corolla.core import CodecError
from corolla.state import BlobStore
from corolla.transport import check_sha256, transfer_pb2

from ._payloads import payload_status

__all__ = [
    "USER_NAMER",
    "NamedBlobs",
    "Namer",
    "node_namer",
    "run_namer",
]

#: Named blobs remembered before the older ones are forgotten.
_NAMED_LIMIT = 10_000

#: Who named a blob: a node (``("node", node_id)``), a run's ServerApp (``("run",
#: run_id)``), or a user submitting a run (``("user", 0)``).
Namer = tuple[str, int]


def node_namer(node_id: int) -> Namer:
    return ("node", node_id)


def run_namer(run_id: int) -> Namer:
    return ("run", run_id)


#: Bundles uploaded through the Control API.
USER_NAMER: Namer = ("user", 0)


@dataclasses.dataclass(slots=True)
class _Name:
    """When a client named a blob (monotonic seconds), and when a message of its that
    names the blob was stored, if it was."""

    named_at: float
    settled_at: float | None = None

    @property
    def last(self) -> float:
        return self.named_at if self.settled_at is None else self.settled_at


class NamedBlobs:
    """The names clients hold on the blobs of ``blobs`` (see the module).

    Parameters
    ----------
    blobs
        The blobs named.
    grace_s
        Seconds a name holds its blob before it is settled.
    clock
        Monotonic seconds.
    """

    def __init__(self, blobs: BlobStore, grace_s: float, clock: Callable[[], float]) -> None:
        self._blobs = blobs
        self.grace_s = grace_s
        self._clock = clock
        self._lock = threading.Lock()
        self._named: dict[str, dict[Namer, _Name]] = {}
        # The blobs each client named and has not settled: most replies name none, and
        # need not be looked through.
        self._open: dict[Namer, set[str]] = {}

    def payload_statuses(
        self, hashes: Iterable[str], namer: Namer
    ) -> list[transfer_pb2.PayloadStatus]:
        """Whether each payload is stored (``StatArrays``); those stored count as named by
        the caller."""
        with self._lock:
            statuses = [payload_status(self._blobs, h) for h in hashes]
            self._mark_named((s.sha256 for s in statuses if s.complete), namer)
        return statuses

    def put(self, data: bytes, namer: Namer) -> str:
        """Store ``data`` and name it for ``namer`` at once; return its hash."""
        with self._lock:
            sha256 = self._blobs.put(data)
            self._mark_named((sha256,), namer)
        return sha256

    def mark_named(self, hashes: Iterable[str], namer: Namer) -> None:
        """Note that a client was just given or told of these blobs."""
        with self._lock:
            self._mark_named(hashes, namer)

    def _mark_named(self, hashes: Iterable[str], namer: Namer) -> None:
        now = self._clock()
        for sha256 in hashes:
            if not _is_digest(sha256):
                continue  # names no blob: remembering it would hold what a caller sent
            self._named.setdefault(sha256, {})[namer] = _Name(now)
            self._open.setdefault(namer, set()).add(sha256)
        if len(self._named) > _NAMED_LIMIT:
            horizon = now - self.grace_s
            for sha256 in list(self._named):
                names = self._named[sha256]
                for key in [k for k, n in names.items() if n.last < horizon]:
                    del names[key]
                    self._open.get(key, set()).discard(sha256)
                if not names:
                    del self._named[sha256]
            self._open = {k: v for k, v in self._open.items() if v}

    def has_open(self, namer: Namer) -> bool:
        """Whether ``namer`` named blobs it has not settled."""
        with self._lock:
            return bool(self._open.get(namer))

    def settle(self, hashes: Iterable[str], namer: Namer) -> None:
        """The messages ``namer`` stored name these blobs: from now on, the state keeps
        them while it needs them, and the client's names stop holding them (once the
        collections that began before this call are over)."""
        now = self._clock()
        with self._lock:
            opened = self._open.get(namer, set())
            for sha256 in hashes:
                name = self._named.get(sha256, {}).get(namer)
                if name is not None:
                    name.settled_at = now
                    opened.discard(sha256)
            if not opened:
                self._open.pop(namer, None)

    def delete_unnamed(self, sha256: str, *, since: float, ignore: Namer | None = None) -> bool:
        """Delete a blob unless a client still holds it; True if deleted.

        A client (other than ``ignore``) holds a blob it named within
        :attr:`grace_s` until it settles the name, and past that if it settled at or
        after ``since`` (the clock's time before the caller read what the state names:
        the message naming the blob may have been stored after that read).
        """
        with self._lock:
            now = self._clock()
            for namer, name in self._named.get(sha256, {}).items():
                if namer == ignore:
                    continue
                if name.settled_at is None:
                    if now - name.named_at < self.grace_s:
                        return False
                elif name.settled_at >= since:
                    return False
            return self._blobs.delete(sha256)


def _is_digest(name: str) -> bool:
    try:
        check_sha256(name)
    except CodecError:
        return False
    return True
