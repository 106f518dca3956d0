"""Node: the daemon on a data owner's machine (``corolla node``).

It connects outbound only: it registers with the link (rejoining with the id and token
kept in its state directory), keeps a heartbeat going, and holds a ``Receive`` stream
open, on which the link pushes messages as soon as they exist. For each message it
installs the run's app bundle if needed (one directory per bundle hash), downloads the
arrays it does not hold and that did not come inline, runs the ClientApp with the run's
context (whose state is kept on disk), and sends the reply on a stream kept open beside
``Receive``: its small arrays inline, the others uploaded first where the link lacks
them. A failure at any step becomes an error reply. A broken connection is retried
with exponential backoff, forever, until :meth:`Node.stop`.
"""

from __future__ import annotations

import enum
import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc

from corolla.client import run_client_app
from corolla.core import (
    AppLoadError,
    Context,
    CorollaError,
    Error,
    ErrorCode,
    Message,
    UserConfigValue,
)
from corolla.project import AppConfig, load_component
from corolla.state import MemoryBlobStore, NodeIdentity, StateDirectoryLock
from corolla.transport import (
    INLINE_ARRAY_BYTES,
    TransportError,
    array_entries,
    bearer_metadata,
    channel_credentials,
    channel_options,
    fleet_pb2,
    fleet_pb2_grpc,
    iter_rpc,
    message_from_proto,
    message_pb2,
    message_to_proto,
    metadata_from_proto,
    requires_tls,
    run_pb2,
    translate_rpc_errors,
    user_config_from_proto,
    user_config_to_proto,
)

from .._bundle import install_bundle
from .._payloads import ArrayCache, pull_payload, push_missing, with_chunk_frames
from ._reply_stream import ReplyStream
from ._store import NodeStore

__all__ = ["ChannelFactory", "Node", "NodeStatus"]

#: Opens a new channel to the link's Fleet address (the node opens one per connection).
ChannelFactory = Callable[[], grpc.Channel]

_log = logging.getLogger("corolla.runtime.node")

#: Codes with which the link refuses a saved identity it does not know (any more).
_FORGOTTEN = frozenset({ErrorCode.NODE_UNAVAILABLE, ErrorCode.UNAUTHENTICATED})

#: Message ids remembered to skip redeliveries.
_SEEN_LIMIT = 10_000
#: Runs whose description (bundle hash, run config) a node remembers.
_RUNS_LIMIT = 64


class NodeStatus(enum.Enum):
    """Where a :class:`Node` is in its life."""

    CREATED = "created"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    STOPPED = "stopped"


class Node:
    """A node daemon connected to the link at ``link_address``.

    Parameters
    ----------
    link_address
        The link's Fleet address.
    state_dir
        Keeps the node's identity, downloaded bundles and context states.
    node_config
        Given to the ClientApp as ``Context.node_config``.
    attributes
        Advertised to the link for node selection.
    root_certificates
        CA file to verify the link's certificate with (TLS); None for the system's store.
    insecure
        Connect without TLS even beyond loopback.
    backoff
        First and largest delay in seconds between reconnection attempts.
    channel_factory
        Opens the channel to the link, instead of one built from ``link_address``,
        ``root_certificates`` and ``insecure`` (a channel with interceptors, a test's
        in-process server).

    Raises
    ------
    ConfigError
        If the address is beyond loopback and neither TLS nor ``insecure`` is possible.
    """

    def __init__(
        self,
        link_address: str,
        state_dir: str | os.PathLike[str],
        *,
        node_config: Mapping[str, UserConfigValue] | None = None,
        attributes: Mapping[str, UserConfigValue] | None = None,
        root_certificates: str | os.PathLike[str] | None = None,
        insecure: bool = False,
        backoff: tuple[float, float] = (0.2, 30.0),
        channel_factory: ChannelFactory | None = None,
    ) -> None:
        self._address = link_address
        self._store = NodeStore(state_dir)
        self._node_config = dict(node_config or {})
        self._attributes = dict(attributes or {})
        self._tls = not insecure and (root_certificates is not None or requires_tls(link_address))
        self._root_certificates = root_certificates
        self._backoff = backoff
        self._channel_factory = channel_factory or self._channel
        self._status = NodeStatus.CREATED
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock: StateDirectoryLock | None = None
        self._call: Any = None
        self._replies: ReplyStream | None = None
        self._seen: dict[str, None] = {}
        self._apps: dict[str, Callable[..., Message]] = {}
        self._runs: dict[int, run_pb2.Run] = {}
        self._downloads = MemoryBlobStore()
        self.node_id: int | None = None
        self.replies_sent = 0

    @property
    def status(self) -> NodeStatus:
        return self._status

    def start(self) -> Node:
        """Start connecting in a background thread; returns self.

        Raises
        ------
        StateInUseError
            If another process holds the node's state directory (another node would
            share its identity and take its messages).
        """
        if self._thread is not None:
            return self
        self._lock = StateDirectoryLock(self._store.root)
        self._thread = threading.Thread(target=self._main, name="corolla-node", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the connection and join the threads. Idempotent."""
        self._stop.set()
        call = self._call
        if call is not None:
            call.cancel()
        replies = self._replies
        if replies is not None:
            replies.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        if self._lock is not None:
            self._lock.close()
        self._status = NodeStatus.STOPPED

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the node is stopped (or ``timeout``); True if it stopped."""
        return self._stop.wait(timeout)

    def __enter__(self) -> Node:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # connection

    def _channel(self) -> grpc.Channel:
        if self._tls:
            credentials = channel_credentials(self._root_certificates)
            return grpc.secure_channel(self._address, credentials, options=channel_options())
        return grpc.insecure_channel(self._address, options=channel_options())

    def _main(self) -> None:
        delay = self._backoff[0]
        while not self._stop.is_set():
            self._status = NodeStatus.CONNECTING
            try:
                with self._channel_factory() as channel:
                    stub = fleet_pb2_grpc.FleetStub(channel)
                    self._session(with_chunk_frames(stub, channel, "Fleet"))
                    delay = self._backoff[0]
            except CorollaError as exc:
                if self._stop.is_set():
                    break
                _log.warning("connection to the link lost (%s); retrying in %.1f s", exc, delay)
            except Exception:
                _log.exception("node failed; retrying in %.1f s", delay)
            if self._stop.wait(delay):
                break
            delay = min(delay * 2, self._backoff[1])
        self._status = NodeStatus.STOPPED

    def _register(self, stub: fleet_pb2_grpc.FleetStub) -> tuple[NodeIdentity, float]:
        request = fleet_pb2.RegisterNodeRequest(
            attributes=user_config_to_proto(self._attributes),
            node_config=user_config_to_proto(self._node_config),
        )
        saved = self._store.load_identity()
        if saved is not None:
            request.node_id = saved.node_id
            request.token = saved.token
        try:
            with translate_rpc_errors():
                response = stub.RegisterNode(request, timeout=30)
        except TransportError as exc:
            if saved is None or exc.code not in _FORGOTTEN:
                raise
            # The link no longer knows this identity (its state was reset): join anew.
            _log.warning("the link refused node %d's identity; registering anew", saved.node_id)
            self._store.forget_identity()
            return self._register(stub)
        identity = NodeIdentity(response.node_id, response.token)
        self._store.save_identity(identity)
        return identity, response.heartbeat_interval or 30.0

    def _session(self, stub: fleet_pb2_grpc.FleetStub) -> None:
        identity, interval = self._register(stub)
        self.node_id = identity.node_id
        metadata = bearer_metadata(identity.token)
        self._status = NodeStatus.CONNECTED
        _log.info("node %d connected to %s", identity.node_id, self._address)
        ended = threading.Event()
        beat = threading.Thread(
            target=self._heartbeat,
            args=(stub, metadata, interval, ended),
            name="corolla-heartbeat",
            daemon=True,
        )
        beat.start()
        replies = self._replies = ReplyStream(stub, metadata)
        try:
            call = stub.Receive(fleet_pb2.ReceiveRequest(), metadata=metadata)
            self._call = call
            if self._stop.is_set():
                call.cancel()
            for response in iter_rpc(call):
                self._handle(stub, metadata, replies, identity.node_id, response.message)
        finally:
            self._call = None
            self._replies = None
            replies.close()
            ended.set()
            beat.join()

    def _heartbeat(
        self, stub: fleet_pb2_grpc.FleetStub, metadata: Any, interval: float, ended: threading.Event
    ) -> None:
        while not ended.wait(interval) and not self._stop.is_set():
            try:
                with translate_rpc_errors():
                    response = stub.Heartbeat(
                        fleet_pb2.HeartbeatRequest(), metadata=metadata, timeout=interval
                    )
                interval = response.heartbeat_interval or interval
            except CorollaError as exc:
                _log.debug("heartbeat failed: %s", exc)

    # messages

    def _handle(
        self,
        stub: fleet_pb2_grpc.FleetStub,
        metadata: Any,
        replies: ReplyStream,
        node_id: int,
        proto: message_pb2.Message,
    ) -> None:
        message_id = proto.metadata.message_id
        if message_id in self._seen:
            return
        try:
            reply = self._run(stub, metadata, node_id, proto)
        except CorollaError as exc:
            if isinstance(exc, TransportError):
                raise
            reply = _error_reply(proto, exc.code, f"node {node_id}: {type(exc).__name__}: {exc}")
        except Exception as exc:
            reply = _error_reply(
                proto, ErrorCode.CLIENT_APP_RAISED, f"node {node_id}: {type(exc).__name__}: {exc}"
            )
        reply_proto, arrays = message_to_proto(
            reply.with_metadata(src_node_id=node_id), inline_bytes=INLINE_ARRAY_BYTES
        )
        try:
            push_missing(stub.StatArrays, stub.PushArrays, arrays, metadata)
            replies.send(reply_proto)
        except TransportError as exc:
            if exc.retryable or self._stop.is_set():
                raise  # reconnect (the link sends the message again), or stopping
            # The link refused the reply for good (the message expired, the run ended):
            # sending it again cannot help.
            _log.warning("the link refused the reply to message %s: %s", message_id, exc)
        # Only once the link acknowledged: a message whose reply was lost with the
        # connection comes again after reconnecting, and is answered then.
        self._seen[message_id] = None
        if len(self._seen) > _SEEN_LIMIT:
            self._seen.pop(next(iter(self._seen)))
        self.replies_sent += 1

    def _run(
        self,
        stub: fleet_pb2_grpc.FleetStub,
        metadata: Any,
        node_id: int,
        proto: message_pb2.Message,
    ) -> Message:
        run_id = proto.metadata.run_id
        run = self._run_info(stub, metadata, run_id)
        app = self._client_app(stub, metadata, run)
        message = message_from_proto(proto, self._download_arrays(stub, metadata, proto))
        context = Context(
            run_id,
            node_id,
            dict(self._node_config),
            user_config_from_proto(run.run_config),
            self._store.load_state(run_id),
        )
        reply = run_client_app(app, message, context)
        self._store.save_state(run_id, context.state)
        return reply

    def _download_arrays(
        self, stub: fleet_pb2_grpc.FleetStub, metadata: Any, proto: message_pb2.Message
    ) -> ArrayCache:
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
        cache = ArrayCache(self._downloads, stub.PullArrays, metadata)
        cache.fetch(wanted)
        return cache

    def _run_info(self, stub: fleet_pb2_grpc.FleetStub, metadata: Any, run_id: int) -> run_pb2.Run:
        """The run's bundle hash and run config, asked of the link once per run (neither
        changes while the run lives)."""
        run = self._runs.get(run_id)
        if run is None:
            with translate_rpc_errors():
                run = stub.GetRun(run_pb2.GetRunRequest(run_id=run_id), metadata=metadata).run
            if len(self._runs) >= _RUNS_LIMIT:
                self._runs.pop(next(iter(self._runs)))
            self._runs[run_id] = run
        return run

    def _client_app(
        self, stub: fleet_pb2_grpc.FleetStub, metadata: Any, run: run_pb2.Run
    ) -> Callable[..., Message]:
        bundle = run.bundle_sha256
        if bundle in self._apps:
            return self._apps[bundle]
        target = self._store.apps_dir / bundle
        if not target.is_dir():
            data = pull_payload(stub.PullBundle, bundle, run.bundle_size, metadata)
            install_bundle(data, target)
        _forget_other_bundles(self._store.apps_dir, target)
        config = AppConfig.load(target)
        app = load_component(config.clientapp, target)
        if not callable(app):
            raise AppLoadError(f"the ClientApp {config.clientapp!r} is not callable")
        self._apps.clear()  # modules of other bundles were unloaded
        self._apps[bundle] = app
        return app  # type: ignore[no-any-return]


def _forget_other_bundles(apps_dir: Path, keep: Path) -> None:
    """Unload modules and import paths of other bundles: two bundles (two versions of an
    app) may define the same module names."""
    root = str(apps_dir.resolve())
    kept = str(keep.resolve())
    sys.path[:] = [p for p in sys.path if not (p.startswith(root) and p != kept)]
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None) or ""
        if file.startswith(root) and not file.startswith(kept + os.sep):
            del sys.modules[name]


def _error_reply(proto: message_pb2.Message, code: int, reason: str) -> Message:
    request = metadata_from_proto(proto.metadata)
    carrier = Message(error=Error(int(code), "request"), metadata=request)
    return Message(error=Error(int(code), reason), reply_to=carrier)
