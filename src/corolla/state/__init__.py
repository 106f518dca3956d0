"""Durable state of a ``corolla link``: nodes, runs, messages, events, checkpoints, blobs.

:class:`LinkState` is the one interface; :class:`SqliteLinkState` the embedded backend.
Payloads (serialized records, app bundles, checkpoints) live in a :class:`BlobStore` and
the state refers to them by sha256 hash. A process that owns a state directory (a link's,
a node's) holds a :class:`StateDirectoryLock` on it. Imports only ``corolla.core``.
"""

from ._base import DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_HEARTBEAT_TOLERANCE, LinkState
from ._blobs import BlobStore, Chunk, DirectoryBlobStore, MemoryBlobStore
from ._errors import (
    BlobIntegrityError,
    BlobNotFoundError,
    CorruptStateError,
    InvalidBlobHashError,
    NodeAuthenticationError,
    ReplyRejectedError,
    RunStatusError,
    SchemaVersionError,
    StateInUseError,
    StorageError,
    UnknownMessageError,
    UnknownNodeError,
    UnknownRunError,
)
from ._lock import StateDirectoryLock
from ._sqlite import SqliteLinkState
from ._sqlite_views import (
    NodeBand,
    NodeSummary,
    Participation,
    ReplyFailure,
    RunSummary,
    SqliteStateViews,
    StateTotals,
)
from ._types import (
    RUN_TRANSITIONS,
    Checkpoint,
    DeliveryStatus,
    EventEntry,
    NodeIdentity,
    NodeInfo,
    RunInfo,
    RunStatus,
    StoredMessage,
)

__all__ = [
    "DEFAULT_HEARTBEAT_INTERVAL",
    "DEFAULT_HEARTBEAT_TOLERANCE",
    "RUN_TRANSITIONS",
    "BlobIntegrityError",
    "BlobNotFoundError",
    "BlobStore",
    "Checkpoint",
    "Chunk",
    "CorruptStateError",
    "DeliveryStatus",
    "DirectoryBlobStore",
    "EventEntry",
    "InvalidBlobHashError",
    "LinkState",
    "MemoryBlobStore",
    "NodeBand",
    "NodeAuthenticationError",
    "NodeIdentity",
    "NodeInfo",
    "NodeSummary",
    "Participation",
    "ReplyFailure",
    "ReplyRejectedError",
    "RunInfo",
    "RunStatus",
    "RunStatusError",
    "RunSummary",
    "SchemaVersionError",
    "SqliteLinkState",
    "SqliteStateViews",
    "StateTotals",
    "StateDirectoryLock",
    "StateInUseError",
    "StorageError",
    "StoredMessage",
    "UnknownMessageError",
    "UnknownNodeError",
    "UnknownRunError",
]
