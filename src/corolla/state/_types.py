"""The values a :class:`LinkState` stores and returns: nodes, runs, messages, events."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping

from corolla.core import (
    Error,
    Event,
    MessageError,
    Metadata,
    UserConfigValue,
    validate_message_type,
)

from ._checks import check_blob_hash, check_seconds

__all__ = [
    "Checkpoint",
    "DeliveryStatus",
    "EventEntry",
    "NodeIdentity",
    "NodeInfo",
    "RUN_TRANSITIONS",
    "RunInfo",
    "RunStatus",
    "StoredMessage",
]


class RunStatus(str, enum.Enum):
    """Where a run is in its life; see :data:`RUN_TRANSITIONS` for the legal moves."""

    PENDING = "pending"
    STARTING = "starting"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    STOPPED = "stopped"

    @property
    def ended(self) -> bool:
        """True for the terminal statuses: finished, failed, stopped."""
        return not RUN_TRANSITIONS[self]


#: status -> the statuses it may move to. Ended runs move nowhere; a run is never restarted
#: through its status (a link resuming after a crash relaunches starting/running runs as
#: they are).
RUN_TRANSITIONS: Mapping[RunStatus, frozenset[RunStatus]] = {
    RunStatus.PENDING: frozenset({RunStatus.STARTING, RunStatus.FAILED, RunStatus.STOPPED}),
    RunStatus.STARTING: frozenset({RunStatus.RUNNING, RunStatus.FAILED, RunStatus.STOPPED}),
    RunStatus.RUNNING: frozenset({RunStatus.FINISHED, RunStatus.FAILED, RunStatus.STOPPED}),
    RunStatus.FINISHED: frozenset(),
    RunStatus.FAILED: frozenset(),
    RunStatus.STOPPED: frozenset(),
}


class DeliveryStatus(str, enum.Enum):
    """Where a message sent to a node is: ``pending -> delivered -> replied``, or ended by
    the link with an error reply: ``expired`` (TTL passed) or ``failed`` (node went offline,
    run ended)."""

    PENDING = "pending"
    DELIVERED = "delivered"
    REPLIED = "replied"
    EXPIRED = "expired"
    FAILED = "failed"


@dataclasses.dataclass(frozen=True)
class NodeIdentity:
    """A node's id and its secret token, issued once at registration.

    The node keeps both on disk and presents them to re-register after a restart; the link
    keeps only the token's hash. The token is left out of ``repr`` so it does not reach logs.
    """

    node_id: int
    token: str = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True)
class NodeInfo:
    """What the link knows about a node (times are seconds since the epoch)."""

    node_id: int
    attributes: Mapping[str, str]
    node_config: Mapping[str, UserConfigValue]
    registered_at: float
    last_heartbeat: float
    heartbeat_interval: float
    online: bool


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """A submitted run. ``started_at`` is set on entering running, ``ended_at`` on ending."""

    run_id: int
    bundle_hash: str
    run_config: Mapping[str, UserConfigValue]
    status: RunStatus
    created_at: float
    updated_at: float
    started_at: float | None = None
    ended_at: float | None = None
    error: str | None = None


@dataclasses.dataclass(frozen=True)
class StoredMessage:
    """A message as the link stores it: metadata plus a reference to its content.

    The content (a serialized ``RecordDict``) lives in the blob store under
    ``content_hash``; an error message has ``error`` instead. Exactly one is given.

    A reply may carry its (small) serialized content in ``content`` as well, whose sha256
    ``content_hash`` then is: the state keeps it in the reply's own row, durable with it,
    instead of a blob that needs fsyncs of its own.

    Raises
    ------
    MessageError
        If both or neither of ``content_hash`` and ``error`` are given, ``content`` is
        given without ``content_hash`` or is not ``bytes``, or the metadata's message
        type or TTL is invalid.
    InvalidBlobHashError
        If ``content_hash`` is not a sha256 hex digest.
    """

    metadata: Metadata
    content_hash: str | None = None
    error: Error | None = None
    content: bytes | None = dataclasses.field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.metadata, Metadata):
            raise MessageError(f"metadata must be a Metadata, got {type(self.metadata).__name__}")
        if (self.content_hash is None) == (self.error is None):
            raise MessageError("a stored message holds exactly one of content_hash and error")
        if self.content_hash is not None:
            check_blob_hash(self.content_hash)
        if self.content is not None and (
            self.content_hash is None or not isinstance(self.content, bytes)
        ):
            raise MessageError("inline content must be bytes, named by content_hash")
        if self.error is not None and not isinstance(self.error, Error):
            raise MessageError(f"message error must be an Error, got {type(self.error).__name__}")
        validate_message_type(self.metadata.message_type)
        try:
            check_seconds(self.metadata.ttl, "message ttl")
        except ValueError as exc:
            raise MessageError(str(exc)) from exc


@dataclasses.dataclass(frozen=True)
class EventEntry:
    """An event as stored, with its sequence number (increasing across the whole link)."""

    seq: int
    event: Event


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """The latest checkpoint of a run: the blob holding it, and the round it ends."""

    run_id: int
    round: int
    blob_hash: str
    saved_at: float
