"""Deleting from the link's blob directory what no run needs any more.

A run stores a content blob per round's message, an array blob per model it sends and per
update a node returns, and keeps small replies in their rows. Two collections delete them.

**While a run is live**, its ServerApp releases the messages whose replies it has received
(``ServerAppIo.ReleaseMessages``, which the gRPC ``Grid`` calls at the end of each
``receive``). :func:`collect_released` deletes the blobs that those messages and replies
named and that nothing the link keeps names (below); it also deletes the run's replaced
checkpoints. So a run's disk use stays near one round's worth, however many rounds it runs.

**Once a run has ended** (finished, failed or stopped), :func:`collect_run` deletes what
any of its messages and replies named that nothing the link keeps names, then drops the
contents its replies keep in their rows and records a ``run.collected`` event.

What the link keeps:

- every run's app bundle;
- every run's latest checkpoint: the record and the arrays it names;
- the arrays every run's ``run.result`` event names (the final model ``corolla run``
  downloads);
- what the messages of live runs that are not released, and their replies, name.

Content is addressed by hash, so two runs, or two rounds, may share a blob. What the state
names is read from its stored contents. A blob that a client was told of or stored
(``StatArrays``, ``PushArrays``, a message's content) is left alone until the client's
message naming it is stored, or for :attr:`LinkLimits.named_grace_s` if none is (see
``NamedBlobs.delete_unnamed``). What an ended run's collection leaves for that reason is
collected again once that time is over (by the link, or when it next starts:
:func:`collect_ended_runs`); what a live run's leaves, with the run once it ends."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Iterable, Sequence

from google.protobuf.message import DecodeError

from corolla.core import CorollaError, Event
from corolla.state import BlobNotFoundError, StorageError
from corolla.transport import array_entries, records_pb2

from ._names import Namer, run_namer
from ._resources import LinkResources

__all__ = [
    "COLLECTED",
    "Collected",
    "collect_ended_runs",
    "collect_released",
    "collect_run",
    "kept_blobs",
]

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
    shared: LinkResources, content: bytes | None, content_hash: str, *, strict: bool
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
    shared: LinkResources, contents: Iterable[tuple[str, bytes | None]], *, strict: bool
) -> set[str]:
    names: set[str] = set()
    for content_hash, content in contents:
        names |= _named_by_content(shared, content, content_hash, strict=strict)
    return names


def kept_blobs(shared: LinkResources) -> set[str]:
    """Every blob the link keeps: bundles, checkpoints, results, and what live runs' messages
    that are not released, and their replies, name.

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
            live = state.run_contents(run.run_id, released=False)
            kept |= _named_by_contents(shared, live, strict=True)
    return kept


def collect_released(
    shared: LinkResources,
    run_id: int,
    contents: Sequence[tuple[str, bytes | None]],
    since: float,
) -> Collected:
    """Delete what only ``contents`` (of messages that live run ``run_id`` released, and of
    their replies: ``LinkState.release_messages``) and the run's replaced checkpoints named
    (see the module's docstring). ``since`` is the link's monotonic clock before the call.

    Raises
    ------
    StorageError
        If what the link keeps cannot be read (see :func:`kept_blobs`): nothing is deleted.
    """
    # A stored content or checkpoint record goes after what it names, and stays while any
    # of that is held by a name: a later collection finds it through the record.
    records = {h: _named_by_content(shared, c, h, strict=False) for h, c in contents if c is None}
    named = set().union(*records.values())
    for content_hash, content in contents:
        if content is not None:
            named |= _named_by_content(shared, content, content_hash, strict=False)
    replaced = shared.replaced.of(run_id)
    for record in replaced:
        records[record] = _named_by_content(shared, None, record, strict=False)
        named |= records[record]
    kept = kept_blobs(shared)
    done = Collected()
    held: set[str] = set()
    for sha256 in sorted(named - kept - records.keys()):
        if _delete(shared, sha256, done, since=since):
            held.add(sha256)
    for record in sorted(records.keys() - kept):
        if records[record] & (held - {record}):
            done.kept_named += 1
        elif _delete(shared, record, done, since=since):
            held.add(record)
    shared.replaced.forget(run_id, {r for r in replaced if not shared.blobs.exists(r)})
    return done


def collect_run(
    shared: LinkResources, run_id: int, kept: set[str] | None = None, since: float | None = None
) -> Collected:
    """Delete what only ended run ``run_id`` named (see the module's docstring). ``kept``
    is :func:`kept_blobs` when the caller has it, read after the link's monotonic clock read
    ``since``. Records a ``run.collected`` event with the figures once nothing of the run
    is left to collect.

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
    if kept is None or since is None:
        since = shared.clock.monotonic()
        kept = kept_blobs(shared)
    named = _named_by_contents(shared, state.run_contents(run_id), strict=False)
    for record in shared.replaced.of(run_id):
        named |= _named_by_content(shared, None, record, strict=False)
    done = Collected()
    # The ended run's ServerApp names nothing any more: its names do not hold blobs.
    ignore = run_namer(run_id)
    for sha256 in sorted(named - kept):
        _delete(shared, sha256, done, since=since, ignore=ignore)
    # Blobs nothing names, written a while ago: what an earlier link process or a client
    # that went away left (an upload never named, a checkpoint replaced).
    horizon = shared.clock.time() - shared.names.grace_s
    for sha256, written in list(shared.blobs.stored()):
        if written < horizon and sha256 not in kept and sha256 not in named:
            _delete(shared, sha256, done, since=since, ignore=ignore, orphan=True)
    if not done.kept_named:
        # The replies' contents name the arrays a later pass would look for: they go last.
        done.reply_contents = state.clear_reply_contents(run_id)
        shared.replaced.forget(run_id)
        state.append_event(Event(COLLECTED, run_id, data=dataclasses.asdict(done)))
    return done


def _delete(
    shared: LinkResources,
    sha256: str,
    done: Collected,
    *,
    since: float,
    ignore: Namer | None = None,
    orphan: bool = False,
) -> bool:
    """Delete one blob unless a client holds it by a name; True if it was held."""
    try:
        size = shared.blobs.size(sha256)
    except BlobNotFoundError:
        return False
    if shared.names.delete_unnamed(sha256, since=since, ignore=ignore):
        done.blobs += 1
        done.bytes += size
        done.orphans += orphan
        return False
    if not orphan:
        done.kept_named += 1
    return True


def collect_ended_runs(shared: LinkResources, stop: threading.Event | None = None) -> Collected:
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
    since = shared.clock.monotonic()
    kept = kept_blobs(shared)
    for run_id in pending:
        if stop is not None and stop.is_set():
            break
        try:
            done = collect_run(shared, run_id, kept, since)
        except CorollaError:
            _log.warning("could not collect run %d", run_id, exc_info=True)
            continue
        for field in dataclasses.fields(Collected):
            setattr(total, field.name, getattr(total, field.name) + getattr(done, field.name))
    return total
