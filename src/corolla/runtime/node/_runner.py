"""What a node does with the messages it receives, one at a time, on a thread of its own.

The node's connection thread reads the ``Receive`` stream and hands each message over
(:meth:`MessageRunner.submit`) without waiting: a ClientApp that runs for long, or
hangs, never keeps the node from reading, so it still hears that a run ended. For each
message, this thread

1. asks the link for the run (bundle hash and signatures, run config) once per run,
   checks it against the data owner's policy (``_gate``), installs the bundle if
   needed (one directory per bundle hash) and starts the run's ClientApp process
   (``_run_processes``) when the run's first message comes;
2. downloads into memory the arrays that did not come inline and that it does not hold;
3. runs the ClientApp in the run's process with the run's context state (kept on disk),
   within the message's deadline: its TTL, capped by the node's ``max_message_s``;
4. sends the reply on the session's reply stream, its small arrays inline, the others
   uploaded first where the link lacks them.

A failure at any step becomes an error reply, except a broken connection: the session
is then aborted, and the node connects again. A message of a run the link said ended is
dropped (the link answered it), and so is the reply of a call that its end killed.

The node's audit log holds each message served (``message.received``, then
``message.ran`` with its outcome: ``ok``, ``error`` with the code and reason, or
``dropped``) and each run's end it was told of (``run.ended``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from corolla.core import (
    CorollaError,
    Error,
    ErrorCode,
    ExecutionError,
    Message,
    UserConfigValue,
)
from corolla.project import AppConfig
from corolla.state import MemoryBlobStore
from corolla.telemetry import Tracing
from corolla.transport import (
    INLINE_ARRAY_BYTES,
    TransportError,
    array_entries,
    message_from_proto,
    message_pb2,
    message_to_proto,
    metadata_from_proto,
    run_pb2,
    translate_rpc_errors,
    user_config_from_proto,
)
from corolla.trust import AuditLog, NodePolicy

from .._audit import audit, reason_summary
from .._bundle import install_bundle
from .._payloads import ArrayCache, pull_payload, push_missing
from ._gate import PolicyGate
from ._metrics import NodeMeter
from ._run_processes import RunProcess, RunProcesses
from ._session import Session
from ._store import NodeStore

__all__ = ["MessageRunner", "message_deadline"]

if TYPE_CHECKING:
    from opentelemetry.trace import Span

_log = logging.getLogger("corolla.runtime.node")

#: Message ids remembered to skip redeliveries.
_SEEN_LIMIT = 10_000
#: Runs whose description (bundle hash, run config) a node remembers.
_RUNS_LIMIT = 64


def message_deadline(metadata: message_pb2.Metadata, now: float, cap: float) -> float:
    """Seconds a message's ClientApp call may take: what is left of its TTL (the link
    refuses a reply after it), at most ``cap``. The age is read on this machine's clock
    against the sender's ``created_at``; a clock behind the sender's counts no age."""
    if metadata.ttl <= 0:
        return cap
    age = max(0.0, now - metadata.created_at) if metadata.created_at > 0 else 0.0
    return min(cap, metadata.ttl - age)


class MessageRunner:
    """Serves a node's messages in order on a thread of its own.

    Parameters
    ----------
    store
        The node's state directory: bundles, context states, working directories.
    node_config
        Given to the ClientApp as ``Context.node_config``.
    processes
        The node's run processes.
    max_message_s
        The longest a ClientApp call may take, whatever the message's TTL.
    policy
        The data owner's policy: the apps the node runs, what a run may ask of it, and
        what its error replies tell (see ``_gate``).
    meter
        Counts the messages served, their seconds and bytes (see ``_metrics``); none if
        None.
    """

    def __init__(
        self,
        store: NodeStore,
        node_config: Mapping[str, UserConfigValue],
        processes: RunProcesses,
        max_message_s: float,
        policy: NodePolicy | None = None,
        meter: NodeMeter | None = None,
    ) -> None:
        self._gate = PolicyGate(policy or NodePolicy(), time.monotonic)
        self._meter = meter
        self._tracing = Tracing.off()
        self._store = store
        self._node_config = dict(node_config)
        self._processes = processes
        self._max_message_s = max_message_s
        self._queue: queue.SimpleQueue[tuple[Session, message_pb2.Message] | None] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._session: Session | None = None
        # Messages answered (to skip redeliveries), and those queued or running.
        self._seen: dict[str, None] = {}
        self._pending: set[str] = set()
        self._stopping = False
        self._runs: dict[int, run_pb2.Run] = {}
        self._downloads = MemoryBlobStore()
        self._audit: AuditLog | None = None

    def start(self, audit_log: AuditLog | None = None, tracing: Tracing | None = None) -> None:
        """Start the thread, recording what it runs in ``audit_log`` and, with ``tracing``
        on, a span for each message that carries a trace context (``node <type>``, its
        ClientApp call ``clientapp <type>`` under it). Idempotent."""
        if self._thread is None:
            self._audit = audit_log
            self._tracing = tracing or Tracing.off()
            self._thread = threading.Thread(
                target=self._loop, name="corolla-node-messages", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Kill the ClientApp call in progress, drop the messages queued, stop every run
        process and join the thread. Idempotent."""
        with self._lock:
            self._stopping = True
        self._processes.kill_all()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join()
        self._processes.close()

    # what the connection thread tells

    def connected(self, session: Session) -> None:
        """Replies go through ``session`` from now on."""
        with self._lock:
            self._session = session

    def disconnected(self, session: Session) -> None:
        """``session`` ended: replies wait for the next one."""
        with self._lock:
            if self._session is session:
                self._session = None

    def submit(self, session: Session, proto: message_pb2.Message) -> None:
        """Queue a message received on ``session``, unless it is being served or was
        answered (the link delivers at least once)."""
        message_id = proto.metadata.message_id
        with self._lock:
            if message_id in self._seen or message_id in self._pending:
                return
            self._pending.add(message_id)
        self._queue.put((session, proto))

    def run_ended(self, run_id: int, reason: str) -> None:
        """The link said run ``run_id`` ended: kill its ClientApp process now."""
        audit(self._audit, "run.ended", {"run_id": run_id, "reason": reason_summary(reason)})
        if self._processes.end(run_id, reason):
            _log.info("run %d ended (%s): its ClientApp process is stopped", run_id, reason)

    # the thread

    def _loop(self) -> None:
        while (item := self._queue.get()) is not None:
            session, proto = item
            span = self._span(session, proto.metadata)
            try:
                self._serve(session, proto, self._tracing.traceparent(span))
            except Exception:  # a bug here must not end the node's messages
                _log.exception("serving message %s failed", proto.metadata.message_id)
                self._forget(proto.metadata.message_id)
            finally:
                self._tracing.end(span)
                del item, session, proto  # the message's arrays, before waiting
            self._processes.close_ended()

    def _span(self, session: Session, metadata: message_pb2.Metadata) -> Span | None:
        """The span of serving a message, the child of the link's that passed it on; None
        if tracing is off or the message carries no trace context."""
        if not metadata.traceparent or not self._tracing.on:
            return None
        attributes = {"corolla.run_id": metadata.run_id, "corolla.node_id": session.node_id}
        name = f"node {metadata.message_type}"
        return self._tracing.start(name, metadata.traceparent, attributes=attributes)

    def _serve(self, session: Session, proto: message_pb2.Message, trace: str = "") -> None:
        """Answer ``proto``; ``trace`` is the trace context of the span serving it ("" for
        none), which the ClientApp's span and the reply carry."""
        metadata = proto.metadata
        if self._is_stopping() or self._processes.ended(metadata.run_id) is not None:
            self._forget(metadata.message_id)  # the link answered it
            return
        audit(self._audit, "message.received", _message_record(metadata))
        if self._meter is not None:
            self._meter.received(proto.ByteSize())
        started = time.monotonic()
        try:
            reply = self._answer(session, proto, trace)
        except TransportError as exc:
            if exc.retryable or session.ended:
                _log.warning("the link could not be reached (%s); connecting again", exc)
                session.abort()  # the link sends the message again, or answered it
                self._forget(metadata.message_id)
                self._ran(metadata, None, started, "the connection to the link was lost")
                return
            reply = _error_reply(proto, exc.code, f"node {session.node_id}: {exc}")
        except CorollaError as exc:
            reply = _error_reply(
                proto, exc.code, f"node {session.node_id}: {type(exc).__name__}: {exc}"
            )
        except Exception as exc:
            if session.ended:  # its channel closed under the calls
                self._forget(metadata.message_id)
                self._ran(metadata, None, started, "the connection to the link was lost")
                return
            reason = f"node {session.node_id}: {type(exc).__name__}: {exc}"
            reply = _error_reply(proto, ErrorCode.EXECUTION, reason)
        seconds = time.monotonic() - started
        if self._is_stopping():  # its call was killed
            self._forget(metadata.message_id)
            self._ran(metadata, None, started, "the node stopped")
            return
        ended = self._processes.ended(metadata.run_id)
        if ended is not None:
            _log.info("run %d ended (%s) while its ClientApp ran", metadata.run_id, ended)
            self._forget(metadata.message_id)
            self._ran(metadata, None, started, f"its run ended ({ended})")
            return
        reply = _withhold_details(reply, self._gate.policy)
        _log_served(metadata, reply, seconds)
        self._ran(metadata, reply, started)
        self._send(session, proto, reply.with_metadata(traceparent=trace) if trace else reply)

    def _answer(self, session: Session, proto: message_pb2.Message, trace: str = "") -> Message:
        run_id = proto.metadata.run_id
        run = self._run_info(session, run_id)
        self._gate.admit(run, proto.metadata)  # before its bundle is even downloaded
        process = self._process(session, run)
        message = message_from_proto(proto, self._download_arrays(session, proto))
        timeout = message_deadline(proto.metadata, time.time(), self._max_message_s)
        if timeout <= 0:
            reason = f"node {session.node_id}: the message expired before its ClientApp ran"
            return _error_reply(proto, ErrorCode.TIMEOUT, reason)
        state = self._store.load_state(run_id)
        name = f"clientapp {proto.metadata.message_type}"
        span = self._tracing.start(name, trace) if trace else None
        try:
            reply, changed = process.call(
                message, session.node_id, self._node_config, state, timeout
            )
        except BaseException as exc:
            self._tracing.end(span, error=f"{type(exc).__name__}: {exc}")
            raise
        self._tracing.end(span, error=str(reply.error) if reply.has_error() else "")
        if changed is not None:
            self._store.save_state(run_id, changed)
        return reply

    def _run_info(self, session: Session, run_id: int) -> run_pb2.Run:
        """The run's bundle hash and run config, asked of the link once per run (neither
        changes while the run lives)."""
        run = self._runs.get(run_id)
        if run is None:
            with translate_rpc_errors():
                request = run_pb2.GetRunRequest(run_id=run_id)
                run = session.stub.GetRun(request, metadata=session.metadata).run
            if len(self._runs) >= _RUNS_LIMIT:
                self._runs.pop(next(iter(self._runs)))
            self._runs[run_id] = run
        return run

    def _process(self, session: Session, run: run_pb2.Run) -> RunProcess:
        """The run's ClientApp process, started with the app of its bundle (installed
        first if needed) when the run's first message comes."""
        process = self._processes.get(run.run_id)
        if process is not None:
            return process
        target = self._store.apps_dir / run.bundle_sha256
        if not target.is_dir():
            stub, metadata = session.stub, session.metadata
            data = pull_payload(stub.PullBundle, run.bundle_sha256, run.bundle_size, metadata)
            install_bundle(data, target)
        config = AppConfig.load(target)
        process = RunProcess(
            run.run_id,
            config.client_ref,  # with the adapter of a Flower app
            user_config_from_proto(run.run_config),
            self._store.work_dir(run.run_id),
        )
        if self._is_stopping():  # stop() killed the processes it knew of
            raise ExecutionError("the node is stopping")
        process.start()  # it loads the app while the arrays download
        for evicted in self._processes.add(process):
            _log.info("run %d's ClientApp process stopped to make room", evicted)
        if self._is_stopping():  # stop() may have looked before it was added
            process.kill()
        _log.info("serving run %d (app %s)", run.run_id, config.name)
        return process

    def _download_arrays(self, session: Session, proto: message_pb2.Message) -> ArrayCache:
        """The message's arrays, downloaded (and verified) into memory.

        A message's arrays are not written to disk: were the node to stop mid-message, the
        link sends it again. The payloads of the message before stay held where this one
        names them too (an evaluation's model is the next round's training model); the
        others are let go.
        """
        wanted = {h: e.encoded_size for h, e in array_entries(proto).items()}
        for sha256, _ in self._downloads.stored():
            if sha256 not in wanted:
                self._downloads.delete(sha256)
        cache = ArrayCache(self._downloads, session.stub.PullArrays, session.metadata)
        fetched = cache.fetch(wanted)
        if self._meter is not None:
            self._meter.received(fetched)
        return cache

    def _send(self, received: Session, proto: message_pb2.Message, reply: Message) -> None:
        message_id = proto.metadata.message_id
        with self._lock:
            # The session the message came on, or the one after it: the link takes a
            # node's reply on any of its connections.
            session = received if not received.ended else self._session
        if session is None or session.ended:
            self._forget(message_id)  # sent again once connected, if still open
            return
        reply_proto, arrays = message_to_proto(
            reply.with_metadata(src_node_id=session.node_id), inline_bytes=INLINE_ARRAY_BYTES
        )
        try:
            stub = session.stub
            pushed = push_missing(stub.StatArrays, stub.PushArrays, arrays, session.metadata)
            session.replies.send(reply_proto)
            if self._meter is not None:
                self._meter.sent(pushed + reply_proto.ByteSize())
        except TransportError as exc:
            if exc.retryable or session.ended:
                session.abort()  # reconnect: the link sends the message again
                self._forget(message_id)
                return
            # The link refused the reply for good (the message expired, the run ended):
            # sending it again cannot help.
            _log.warning("the link refused the reply to message %s: %s", message_id, exc)
        # Only once the link acknowledged: a message whose reply was lost with the
        # connection comes again after reconnecting, and is answered then.
        with self._lock:
            self._pending.discard(message_id)
            self._seen[message_id] = None
            if len(self._seen) > _SEEN_LIMIT:
                self._seen.pop(next(iter(self._seen)))

    def _ran(
        self,
        metadata: message_pb2.Metadata,
        reply: Message | None,
        started: float,
        dropped: str = "",
    ) -> None:
        """Record a message served: its reply's outcome, or why it was ``dropped``."""
        run = self._runs.get(metadata.run_id)
        seconds = round(time.monotonic() - started, 6)
        data: dict[str, object] = {
            **_message_record(metadata),
            "bundle": run.bundle_sha256 if run is not None else "",
            "seconds": seconds,
        }
        code = None
        if reply is None:
            data.update(outcome="dropped", reason=dropped)
        elif reply.has_error():
            code = reply.error.code
            data.update(outcome="error", code=code, reason=reason_summary(reply.error.reason))
        else:
            data["outcome"] = "ok"
        audit(self._audit, "message.ran", data)
        if self._meter is not None:
            self._meter.served(metadata.message_type, str(data["outcome"]), seconds, code)

    def _is_stopping(self) -> bool:
        with self._lock:
            return self._stopping

    def _forget(self, message_id: str) -> None:
        """The message was not answered: serve it again if it comes again."""
        with self._lock:
            self._pending.discard(message_id)


def _message_record(metadata: message_pb2.Metadata) -> dict[str, object]:
    return {
        "run_id": metadata.run_id,
        "message_id": metadata.message_id,
        "type": metadata.message_type,
    }


def _log_served(metadata: message_pb2.Metadata, reply: Message, seconds: float) -> None:
    what = f"run {metadata.run_id}: {metadata.message_type} message (group {metadata.group_id!r})"
    if not reply.has_error():
        _log.info("%s answered in %.2f s", what, seconds)
        return
    error = reply.error
    try:
        name = ErrorCode(error.code).name
    except ValueError:
        name = "code"
    first_line = error.reason.splitlines()[0] if error.reason else ""
    _log.warning("%s failed in %.2f s: %s (%d): %s", what, seconds, name, error.code, first_line)


def _withhold_details(reply: Message, policy: NodePolicy) -> Message:
    """``reply``, its error's details left out if the policy keeps them on the node (a
    refusal by the policy names its rule in full); they go to the node's log instead."""
    if not reply.has_error() or reply.error.code == ErrorCode.PERMISSION_DENIED:
        return reply
    error = reply.error
    reason = policy.error_reason(error.reason)
    if reason == error.reason:
        return reply
    _log.warning(
        "run %d: error details kept on this node by its policy:\n%s",
        reply.metadata.run_id,
        error.reason,
    )
    return Message(error=Error(error.code, reason), metadata=reply.metadata)


def _error_reply(proto: message_pb2.Message, code: int, reason: str) -> Message:
    request = metadata_from_proto(proto.metadata)
    carrier = Message(error=Error(int(code), "request"), metadata=request)
    return Message(error=Error(int(code), reason), reply_to=carrier)
