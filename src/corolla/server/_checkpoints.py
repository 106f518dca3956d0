"""Where a run's checkpoints are kept, when its grid keeps any."""

from __future__ import annotations

from typing import Protocol

from ..core import RecordDict

__all__ = ["CheckpointStore", "MemoryCheckpoints"]


class CheckpointStore(Protocol):
    """A run's latest checkpoint, kept durably enough that a ServerApp restarted after a
    crash finds it (:attr:`~corolla.server.Grid.checkpoints`)."""

    def save(self, server_round: int, content: RecordDict) -> None:
        """Keep ``content`` as the checkpoint at the end of ``server_round``, replacing the
        one before.

        Raises
        ------
        CorollaError
            If it cannot be kept (an older round than the one kept, the store gone).
        """
        ...

    def load(self) -> tuple[int, RecordDict] | None:
        """The latest checkpoint as ``(round, content)``, or None if there is none.

        Raises
        ------
        CorollaError
            If it cannot be read.
        """
        ...


class MemoryCheckpoints:
    """Checkpoints kept in this process: for tests, and grids that outlive a ServerApp."""

    def __init__(self) -> None:
        self._latest: tuple[int, RecordDict] | None = None

    def save(self, server_round: int, content: RecordDict) -> None:
        self._latest = (server_round, content)

    def load(self) -> tuple[int, RecordDict] | None:
        return self._latest
