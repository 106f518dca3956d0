"""What opening a link's state database costs: SQLite's page checks on a realistic state.

Builds a state of ``--nodes`` nodes x ``--rounds`` rounds (a message to each node and its
reply, carrying ``--content`` bytes in its row) in a temporary directory, then opens it
with ``check="quick"`` and ``check="full"``, from the page cache (best of 3) and after
asking the kernel to drop the file's cached pages (``posix_fadvise(DONTNEED)``, which
approximates a cold start)::

    python benchmarks/state_open.py                         # 1000 nodes x 50 rounds
    python benchmarks/state_open.py --rounds 5 --content 20000

Prints one JSON object: the database's size and messages, and the seconds of each open.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

from corolla.core import Metadata
from corolla.state import RunStatus, SqliteLinkState, StoredMessage


def _build(path: Path, nodes: int, rounds: int, content: int) -> int:
    with SqliteLinkState(path, synchronous="NORMAL") as state:
        run_id = state.create_run(hashlib.sha256(b"bundle").hexdigest()).run_id
        state.update_run_status(run_id, RunStatus.STARTING)
        state.update_run_status(run_id, RunStatus.RUNNING)
        node_ids = [state.register_node().node_id for _ in range(nodes)]
        model = hashlib.sha256(b"model").hexdigest()
        for round_ in range(rounds):
            ids = state.store_messages(
                StoredMessage(
                    Metadata(run_id, "", 0, node, "", str(round_), "train", 3600.0),
                    content_hash=model,
                )
                for node in node_ids
            )
            state.fetch_messages_many(node_ids)
            replies = []
            for node, message_id in zip(node_ids, ids):
                data = os.urandom(content)
                metadata = Metadata(run_id, "", node, 0, message_id, str(round_), "train", 3600.0)
                replies.append(
                    StoredMessage(
                        metadata, content_hash=hashlib.sha256(data).hexdigest(), content=data
                    )
                )
            state.store_replies(replies)
    return nodes * rounds


def _drop_cache(path: Path) -> None:
    for file in (path, Path(f"{path}-wal")):
        if file.exists():
            fd = os.open(file, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def _open_seconds(path: Path, check: str, *, cold: bool) -> float:
    if cold:
        _drop_cache(path)
    started = time.perf_counter()
    state = SqliteLinkState(path, check=check)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - started
    state.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--content", type=int, default=200, help="bytes of each reply's content")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "state.db"
        messages = _build(path, args.nodes, args.rounds, args.content)
        result: dict[str, object] = {
            "messages": messages,
            "replies": messages,
            "database_mb": round(path.stat().st_size / 1e6, 1),
        }
        for check in ("quick", "full"):
            warm = min(_open_seconds(path, check, cold=False) for _ in range(3))
            result[f"open_{check}_s"] = round(warm, 3)
            result[f"open_{check}_cold_s"] = round(_open_seconds(path, check, cold=True), 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
