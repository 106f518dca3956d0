"""Deleting from the link's blob directory what only an ended run still named.

A run stores a content blob per round's message, an array blob per model it sends and per
update a node returns, and keeps small replies in their rows. Once the run has ended
(finished, failed or stopped), none of that is read again, except what the link keeps for
every run:

- its app bundle;
- its latest checkpoint: the record and the arrays it names;
- the arrays its ``run.result`` event names (the final model ``corolla run`` downloads).

:func:`collect_run` deletes the blobs the run's messages and replies named that nothing
above names, for any run, and that no message or reply of a run still live names; then it
drops the contents its replies keep in their rows and records a ``run.collected`` event.

Content is addressed by hash, so two runs may share a blob. A live run's references are
read from its stored contents; and a blob that a client other than the ended run's
ServerApp was told of or stored lately (``StatArrays``, ``PushArrays``, a message's
content) is left alone for :data:`~._shared.NAMED_GRACE_S`, as the client may be about
to name it in a message. The run is then collected again once that time is over (by the
link, or when it next starts: :func:`collect_ended_runs`)."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterable

from google.protobuf.message import DecodeError

from corolla.core import CorollaError, Event
from corolla.state import BlobNotFoundError, StorageError
from corolla.transport import array_entries, records_pb2

from ._shared import NAMED_GRACE_S, LinkShared

__all__ = ["COLLECTED", "Collected", "collect_ended_runs", "collect_run", "kept_blobs"]

_log = logging.getLogger("corolla.runtime.collect")

#: The event that records a run's collection.
COLLECTED = "run.collected"


@dataclasses.dataclass
class Collected:
    """What one collection deleted."""

    blobs: int = 0
    bytes: int = 0
    #: Of ``blobs``, those no run named (see :func:`collect_run`).
    orphans: int = 0
    reply_contents: int = 0
    kept_named: int = 0


def _named_by_content(
    shared: LinkShared, content: bytes | None, content_hash: str, *, strict: bool
) -> set[str]:
    """The blobs a stored content names: itself (unless kept in a row) and its arrays.

    Raises
    ------
    StorageError
        If ``strict`` and the content does not parse (what it names is then unknown).
    """
    names = set()
    if content is None:
        names.add(content_hash)
        try:
            content = bytes(shared.blobs.open(content_hash))
        except BlobNotFoundError:
            return names  # collected before
    proto = records_pb2.RecordDict()
    try:
        proto.ParseFromString(content)
    except DecodeError as exc:
        if strict:
            raise StorageError(
                f"stored content {content_hash} does not parse ({exc}): what it names "
                "cannot be known, so nothing is collected"
            ) from exc
        _log.warning("stored content %s of an ended run does not parse", content_hash)
        return names
    names.update(array_entries(proto))
    return names


def _named_by_contents(
    shared: LinkShared, contents: Iterable[tuple[str, bytes | None]], *, strict: bool
) -> set[str]:
    names: set[str] = set()
    for content_hash, content in contents:
        names |= _named_by_content(shared, content, content_hash, strict=strict)
    return names


def kept_blobs(shared: LinkShared) -> set[str]:
    """Every blob the link keeps: bundles, checkpoints, results, and what live runs name.

    Raises
    ------
    StorageError
        If a checkpoint or a live run's content does not parse.
    """
    state = shared.state
    kept: set[str] = set()
    for run in state.list_runs():
        kept.add(run.bundle_hash)
        checkpoint = state.load_checkpoint(run.run_id)
        if checkpoint is not None:
            kept |= _named_by_content(shared, None, checkpoint.blob_hash, strict=True)
        for entry in state.read_events(run.run_id, kind="run.result"):
            for ref in entry.event.data.get("arrays") or ():
                if isinstance(ref, dict) and isinstance(ref.get("sha256"), str):
                    kept.add(ref["sha256"])
        if not run.status.ended:
            kept |= _named_by_contents(shared, state.run_contents(run.run_id), strict=True)
    return kept


def collect_run(shared: LinkShared, run_id: int, kept: set[str] | None = None) -> Collected:
    """Delete what only ended run ``run_id`` named (see the module's docstring); ``kept``
    is :func:`kept_blobs` when the caller has it. Records a ``run.collected`` event with
    the figures once nothing of the run is left to collect.

    Raises
    ------
    RunStatusError
        If the run has not ended.
    UnknownRunError
        If no run has ``run_id``.
    StorageError
        If what the link keeps cannot be read (see :func:`kept_blobs`): nothing is deleted.
    """
    state = shared.state
    named = _named_by_contents(shared, state.run_contents(run_id), strict=False)
    for record in shared.superseded(run_id):
        named |= _named_by_content(shared, None, record, strict=False)
    kept = kept if kept is not None else kept_blobs(shared)
    done = Collected()
    for sha256 in sorted(named - kept):
        _delete(shared, sha256, run_id, done)
    # Blobs nothing names, written a while ago: what an earlier link process or a client
    # that went away left (an upload never named, a checkpoint replaced).
    horizon = time.time() - NAMED_GRACE_S
    for sha256, written in list(shared.blobs.stored()):
        if written < horizon and sha256 not in kept and sha256 not in named:
            _delete(shared, sha256, run_id, done, orphan=True)
    if not done.kept_named:
        # The replies' contents name the arrays a later pass would look for: they go last.
        done.reply_contents = state.clear_reply_contents(run_id)
        shared.forget_superseded(run_id)
        state.append_event(Event(COLLECTED, run_id, data=dataclasses.asdict(done)))
    return done


def _delete(
    shared: LinkShared, sha256: str, run_id: int, done: Collected, *, orphan: bool = False
) -> None:
    try:
        size = shared.blobs.size(sha256)
    except BlobNotFoundError:
        return
    if shared.delete_unnamed(sha256, run_id):
        done.blobs += 1
        done.bytes += size
        done.orphans += orphan
    elif not orphan:
        done.kept_named += 1


def collect_ended_runs(shared: LinkShared, stop: threading.Event | None = None) -> Collected:
    """Collect every ended run not collected yet (what a stopped link left); stop early if
    ``stop`` is set. A run that cannot be collected is logged and skipped."""
    state = shared.state
    pending = [
        run.run_id
        for run in state.list_runs()
        if run.status.ended and not state.read_events(run.run_id, kind=COLLECTED, limit=1)
    ]
    total = Collected()
    if not pending:
        return total
    kept = kept_blobs(shared)
    for run_id in pending:
        if stop is not None and stop.is_set():
            break
        try:
            done = collect_run(shared, run_id, kept)
        except CorollaError:
            _log.warning("could not collect run %d", run_id, exc_info=True)
            continue
        for field in dataclasses.fields(Collected):
            setattr(total, field.name, getattr(total, field.name) + getattr(done, field.name))
    return total
