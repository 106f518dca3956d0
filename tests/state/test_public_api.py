"""The public surface of ``corolla.state`` is exactly the intended names."""

from __future__ import annotations

import corolla.state

PUBLIC = {
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
}


def test_exports_are_exactly_the_public_names():
    assert set(corolla.state.__all__) == PUBLIC
    assert len(corolla.state.__all__) == len(PUBLIC)
    for name in PUBLIC:
        assert hasattr(corolla.state, name)
