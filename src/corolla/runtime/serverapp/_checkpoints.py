"""A run's checkpoints, kept on its link, and the encodings a round's sends share.

A checkpoint is a record dict (the global arrays, the history, the strategy's state)
stored on the link as blobs: its arrays, then the record naming them, then the
``SaveCheckpoint`` call that makes it the run's latest. The round's global model is
already on the link when its checkpoint is saved, and is the next round's message: an
:class:`ArrayEncodings` shared by the grid's sends and its checkpoints hashes it once.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.message import DecodeError

from corolla.core import CodecError, RecordDict
from corolla.state import MemoryBlobStore
from corolla.transport import (
    EncodeCache,
    array_entries,
    record_dict_from_proto,
    record_dict_to_proto,
    records_pb2,
    serverappio_pb2,
    sha256_of,
    translate_rpc_errors,
)

from .._payloads import ArrayCache, pull_payload, push_missing

__all__ = ["ArrayEncodings", "LinkCheckpoints"]


class ArrayEncodings:
    """The encoded arrays of the next batch of sends: a checkpoint encodes the round's
    model here, and the next send (the next round's messages, which carry that model)
    takes them instead of hashing the model again; then a new batch begins."""

    def __init__(self) -> None:
        self.cache = EncodeCache()

    def take(self) -> EncodeCache:
        """The encodings gathered so far, for one send; later ones start afresh (entries
        hold their arrays: they must not outlive the batch)."""
        cache, self.cache = self.cache, EncodeCache()
        return cache


class LinkCheckpoints:
    """The :class:`~corolla.server.CheckpointStore` of a run on its link.

    Parameters
    ----------
    stub
        The run's ServerAppIo stub (with chunk frames, see ``with_chunk_frames``).
    metadata
        The run's credentials.
    encodings
        Shared with the grid's sends.
    """

    def __init__(self, stub: Any, metadata: Any, encodings: ArrayEncodings) -> None:
        self._stub = stub
        self._metadata = metadata
        self._encodings = encodings

    def save(self, server_round: int, content: RecordDict) -> None:
        """Keep ``content`` on the link as the run's checkpoint: its arrays as blobs (those
        the link holds already, such as the round's global model, are not sent again),
        then the record that names them.

        Raises
        ------
        CorollaError
            If the link refuses it (an older round than the saved one) or is unreachable.
        """
        proto, payloads = record_dict_to_proto(content, self._encodings.cache)
        push_missing(self._stub.StatArrays, self._stub.PushArrays, payloads, self._metadata)
        record = proto.SerializeToString(deterministic=True)
        digest = sha256_of(record)
        push_missing(self._stub.StatArrays, self._stub.PushArrays, {digest: record}, self._metadata)
        request = serverappio_pb2.SaveCheckpointRequest(round=server_round, sha256=digest)
        with translate_rpc_errors():
            self._stub.SaveCheckpoint(request, metadata=self._metadata)

    def load(self) -> tuple[int, RecordDict] | None:
        """The run's latest checkpoint as ``(round, content)``, or None if it has none.

        Raises
        ------
        CodecError
            If the record does not parse or a payload does not verify.
        CorollaError
            If the link is unreachable.
        """
        with translate_rpc_errors():
            found = self._stub.LoadCheckpoint(
                serverappio_pb2.LoadCheckpointRequest(), metadata=self._metadata
            )
        if not found.found:
            return None
        data = pull_payload(self._stub.PullArrays, found.sha256, found.size, self._metadata)
        proto = records_pb2.RecordDict()
        try:
            proto.ParseFromString(bytes(data))
        except DecodeError as exc:
            raise CodecError(f"the run's checkpoint does not parse: {exc}") from exc
        arrays = ArrayCache(MemoryBlobStore(), self._stub.PullArrays, self._metadata)
        arrays.fetch({h: e.encoded_size for h, e in array_entries(proto).items()})
        return found.round, record_dict_from_proto(proto, arrays)
