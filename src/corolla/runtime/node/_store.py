"""What a node keeps on disk under its state directory, so a restart loses nothing.

::

    STATE/identity.json          node id and token issued by the link
    STATE/node_key.pem           the node's Ed25519 private key (``corolla.trust.NodeKey``)
    STATE/blobs/                 the arrays of context states, by hash
    STATE/apps/<bundle sha256>/  installed app bundles, one directory each
    STATE/runs/<run id>/state.pb the Context.state of each run (arrays in blobs/)
    STATE/runs/<run id>/work/    the working directory of the run's ClientApp process
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from corolla.core import RecordDict
from corolla.state import DirectoryBlobStore, NodeIdentity
from corolla.transport import (
    record_dict_from_proto,
    record_dict_to_proto,
    records_pb2,
    transfer_pb2,
)

from .._payloads import ArrayCache

__all__ = ["NodeStore"]


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class NodeStore:
    """A node's state directory."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.blobs = DirectoryBlobStore(self.root / "blobs")
        self.apps_dir = self.root / "apps"

    # identity

    def load_identity(self) -> NodeIdentity | None:
        """The identity of an earlier registration, if any."""
        path = self.root / "identity.json"
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text("utf-8"))
            return NodeIdentity(int(data["node_id"]), str(data["token"]))
        except (ValueError, KeyError, TypeError):
            return None

    def save_identity(self, identity: NodeIdentity) -> None:
        data = json.dumps({"node_id": identity.node_id, "token": identity.token})
        _write_atomically(self.root / "identity.json", data.encode())
        os.chmod(self.root / "identity.json", 0o600)

    def forget_identity(self) -> None:
        (self.root / "identity.json").unlink(missing_ok=True)

    def work_dir(self, run_id: int) -> Path:
        """The working directory of run ``run_id``'s ClientApp process (not created here)."""
        return self.root / "runs" / str(run_id) / "work"

    # context state

    def _state_path(self, run_id: int) -> Path:
        return self.root / "runs" / str(run_id) / "state.pb"

    def load_state(self, run_id: int) -> RecordDict:
        """The run's context state (empty for a new run)."""
        path = self._state_path(run_id)
        if not path.is_file():
            return RecordDict()
        proto = records_pb2.RecordDict()
        proto.ParseFromString(path.read_bytes())
        resolve = ArrayCache(self.blobs, _no_pull)
        return record_dict_from_proto(proto, resolve)

    def save_state(self, run_id: int, state: RecordDict) -> None:
        """Persist the run's context state (arrays first, then the record that names them)."""
        proto, arrays = record_dict_to_proto(state)
        for sha256, encoded in arrays.items():
            if not self.blobs.exists(sha256):
                self.blobs.put_stream(encoded.segments(), expected_hash=sha256)
        _write_atomically(self._state_path(run_id), proto.SerializeToString(deterministic=True))


def _no_pull(*args: object, **kwargs: object) -> Iterator[transfer_pb2.Chunk]:
    raise KeyError("context state arrays are local")
