"""Node: the daemon on a data owner's machine (``corolla node``).

It connects outbound only: it registers with the link (rejoining with the id and token
kept in its state directory), keeps a heartbeat going, and holds a ``Receive`` stream
open, on which the link pushes messages as soon as they exist and tells it when a run
ends. Its connection thread only reads that stream: the messages are served, one at a
time, by a thread of their own (``_runner``), each run's ClientApp in a child process
of its own (``_run_processes``), so that a ClientApp that crashes, exits or hangs costs
an error reply, never the node, and a run stopped with ``corolla stop`` frees the node
at once.

A connection that drops is retried with exponential backoff until :meth:`Node.stop`.
One that never worked because of the node's settings (a CA that did not sign the
link's certificate, an address with no Fleet service) ends the node with a
:class:`~corolla.core.ConfigError`, in :attr:`Node.error` (see ``_connection``).

The node logs (logger ``corolla.runtime.node``, INFO) its registration, each run it
starts serving, each message it answers, and its ClientApps' errors (WARNING).
"""

from __future__ import annotations

import enum
import logging
import math
import os
import threading
from collections.abc import Callable, Mapping
from types import TracebackType

import grpc

from corolla.core import ConfigError, CorollaError, ErrorCode, UserConfigValue
from corolla.execution import start_forkserver
from corolla.state import NodeIdentity, StateDirectoryLock
from corolla.telemetry import Tracing
from corolla.transport import (
    TransportError,
    bearer_metadata,
    channel_credentials,
    channel_options,
    fleet_pb2,
    fleet_pb2_grpc,
    requires_tls,
    translate_rpc_errors,
    user_config_to_proto,
)
from corolla.trust import AuditLog, NodeKey, NodePolicy, SessionOffer

from .._audit import audit
from .._payloads import with_chunk_frames
from .._prometheus import MetricsEndpoint, split_http_address
from ._connection import describe, setting_error
from ._metrics import NodeMeter
from ._run_processes import DEFAULT_RUN_PROCESSES, RunProcesses
from ._runner import MessageRunner
from ._session import Session
from ._signing import RequestSigning
from ._store import NodeStore

__all__ = ["DEFAULT_MAX_MESSAGE_S", "ChannelFactory", "Node", "NodeStatus"]

#: Opens a new channel to the link's Fleet address (the node opens one per connection).
ChannelFactory = Callable[[], grpc.Channel]

_log = logging.getLogger("corolla.runtime.node")

#: Codes with which the link refuses a saved identity it does not know (any more).
_FORGOTTEN = frozenset({ErrorCode.NODE_UNAVAILABLE, ErrorCode.UNAUTHENTICATED})

#: The longest a ClientApp call may take by default, whatever the message's TTL (12 h
#: by default): a hung ClientApp costs its run at most this.
DEFAULT_MAX_MESSAGE_S = 3600.0


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
        Keeps the node's identity, downloaded bundles, context states and the working
        directories of its runs' ClientApp processes.
    node_config
        Given to the ClientApp as ``Context.node_config``.
    attributes
        Advertised to the link for node selection.
    root_certificates
        CA file to verify the link's certificate with (TLS); None for the system's store.
    certificate, private_key
        The node's client certificate and key (PEM files, e.g. ``node.pem`` and
        ``node.key`` from ``corolla certs``), for a link that requires them (mutual TLS).
    insecure
        Connect without TLS even beyond loopback.
    backoff
        First and largest delay in seconds between reconnection attempts.
    channel_factory
        Opens the channel to the link, instead of one built from ``link_address``,
        ``root_certificates`` and ``insecure`` (a channel with interceptors, a test's
        in-process server).
    max_message_s
        The longest a ClientApp call may take, whatever the message's TTL; a call that
        overruns it is killed and answered with a ``TIMEOUT`` error.
    max_run_processes
        How many runs' ClientApp processes the node keeps (see ``_run_processes``).
    policy
        The data owner's policy: which apps the node runs, how many rounds and seconds a
        run may ask of it, and whether its error replies carry their details (see
        ``docs/security.md``); by default every app, without limits, in full.
    metrics_address
        Where to serve the node's Prometheus metrics over HTTP (``HOST:PORT``, see
        ``_metrics``); none if None. Beyond loopback only with ``insecure``.
    tracing
        The node's spans of the messages it serves (see ``corolla.telemetry``); None
        for what the environment configures (started and stopped with the node).

    Raises
    ------
    ConfigError
        If the address is beyond loopback and neither TLS nor ``insecure`` is possible,
        the CA file cannot be read or holds no certificate, a limit is not positive, or
        the metrics address is malformed, or beyond loopback without ``insecure``.
    """

    def __init__(
        self,
        link_address: str,
        state_dir: str | os.PathLike[str],
        *,
        node_config: Mapping[str, UserConfigValue] | None = None,
        attributes: Mapping[str, UserConfigValue] | None = None,
        root_certificates: str | os.PathLike[str] | None = None,
        certificate: str | os.PathLike[str] | None = None,
        private_key: str | os.PathLike[str] | None = None,
        insecure: bool = False,
        backoff: tuple[float, float] = (0.2, 30.0),
        channel_factory: ChannelFactory | None = None,
        max_message_s: float = DEFAULT_MAX_MESSAGE_S,
        max_run_processes: int = DEFAULT_RUN_PROCESSES,
        policy: NodePolicy | None = None,
        metrics_address: str | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        if metrics_address is not None:
            split_http_address(metrics_address)
            if requires_tls(metrics_address) and not insecure:
                raise ConfigError(
                    f"node metrics are served over plain HTTP, and {metrics_address} is "
                    "reachable beyond this machine: serve them on loopback (127.0.0.1) "
                    "or give --insecure"
                )
        self._metrics_address = metrics_address
        self._meter = None if metrics_address is None else NodeMeter()
        self._metrics: MetricsEndpoint | None = None
        self._tracing = tracing
        self._own_tracing: Tracing | None = None
        if not (isinstance(max_message_s, int | float) and 0 < max_message_s < math.inf):
            raise ConfigError(f"max_message_s must be a positive number, got {max_message_s!r}")
        self._address = link_address
        self._store = NodeStore(state_dir)
        self._node_config = dict(node_config or {})
        self._attributes = dict(attributes or {})
        self._tls = not insecure and (root_certificates is not None or requires_tls(link_address))
        # Read now: a CA file that is missing or is no certificate is an error of the
        # command, not a connection to retry.
        if (certificate is not None or private_key is not None) and not self._tls:
            raise ConfigError(
                "a client certificate is presented over TLS: give --root-certificates (and "
                "not --insecure) with --certificate and --key"
            )
        self._credentials = (
            channel_credentials(root_certificates, certificate=certificate, private_key=private_key)
            if self._tls
            else None
        )
        self._backoff = backoff
        self._channel_factory = channel_factory or self._channel
        self._runner = MessageRunner(
            self._store,
            self._node_config,
            RunProcesses(max_run_processes),
            max_message_s,
            policy,
            self._meter,
        )
        self._status = NodeStatus.CREATED
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock: StateDirectoryLock | None = None
        self._session: Session | None = None
        self._worked = False
        self.error: CorollaError | None = None
        self.node_id: int | None = None
        #: The node's key pair, read or made by :meth:`start`.
        self.key: NodeKey | None = None
        #: What the node did (``STATE/audit.log``), opened by :meth:`start`.
        self._audit: AuditLog | None = None

    @property
    def status(self) -> NodeStatus:
        return self._status

    @property
    def metrics_url(self) -> str | None:
        """Where Prometheus reads the node's metrics (with the port actually bound); None
        if it serves none or is not started."""
        return None if self._metrics is None else self._metrics.url

    def start(self) -> Node:
        """Start connecting in a background thread; returns self.

        Raises
        ------
        StateInUseError
            If another process holds the node's state directory (another node would
            share its identity and take its messages).
        ConfigError
            If the last line of the node's audit log is not a record (see
            ``corolla audit verify``), or the metrics address cannot be bound.
        """
        if self._thread is not None:
            return self
        self._lock = StateDirectoryLock(self._store.root)
        if self._meter is not None and self._metrics_address is not None:
            try:
                self._metrics = MetricsEndpoint(
                    self._meter.registry, self._metrics_address, logger=_log
                )
            except BaseException:
                self._lock.close()
                raise
        # The node's identity, made on its first start (``corolla node keys`` prints it).
        self.key, made = NodeKey.load_or_create(self._store.root)
        if made:
            _log.info("node key made in %s: %s", self._store.root, self.key.public_text)
        try:
            self._audit = AuditLog(self._store.root / AuditLog.FILE)
        except BaseException:
            if self._metrics is not None:
                self._metrics.stop()
            self._lock.close()
            raise
        audit(
            self._audit, "node.start", {"link": self._address, "public_key": self.key.public_text}
        )
        # ClientApp processes fork from it: its imports happen now, not at the first message.
        start_forkserver()
        tracing = self._tracing
        if tracing is None:
            tracing = self._own_tracing = Tracing.from_environment("corolla-node")
        self._runner.start(self._audit, tracing)
        self._thread = threading.Thread(target=self._main, name="corolla-node", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the connection, stop the ClientApp processes and join the threads.
        Idempotent."""
        self._stop.set()
        session = self._session
        if session is not None:
            session.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._runner.stop()
        if self._own_tracing is not None:
            self._own_tracing.shutdown()
        if self._metrics is not None:
            self._metrics.stop()
        self._store.blobs.close()
        log, self._audit = self._audit, None
        if log is not None:
            audit(log, "node.stop")
            log.close()
        if self._lock is not None:
            self._lock.close()
        self._status = NodeStatus.STOPPED

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the node is stopped, or gave up on a connection that never worked
        (see :attr:`error`), or ``timeout`` passed; True if it stopped."""
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
        if self._credentials is not None:
            return grpc.secure_channel(self._address, self._credentials, options=channel_options())
        return grpc.insecure_channel(self._address, options=channel_options())

    def _main(self) -> None:
        delay = self._backoff[0]
        while not self._stop.is_set():
            self._status = NodeStatus.CONNECTING
            try:
                with self._channel_factory() as channel:
                    assert self.key is not None
                    signing = RequestSigning(self.key)
                    signed = grpc.intercept_channel(channel, signing)
                    stub = fleet_pb2_grpc.FleetStub(signed)
                    self._session_on(with_chunk_frames(stub, signed, "Fleet"), signing)
                    delay = self._backoff[0]
            except CorollaError as exc:
                if self._stop.is_set():
                    break
                fatal = None if self._worked else setting_error(exc, self._address, self._tls)
                if fatal is not None:
                    self._give_up(fatal)
                    break
                what = "lost" if self._worked else "failed"
                _log.warning(
                    "connection to the link at %s %s (%s); retrying in %.1f s",
                    self._address,
                    what,
                    describe(exc, self._tls),
                    delay,
                )
            except Exception:
                if self._stop.is_set():  # calls on the channel it closed
                    break
                _log.exception("node failed; retrying in %.1f s", delay)
            if self._stop.wait(delay):
                break
            delay = min(delay * 2, self._backoff[1])
        self._status = NodeStatus.STOPPED

    def _give_up(self, error: ConfigError) -> None:
        """End the node: a connection that never worked will not by retrying. The
        error is the caller's to report (``corolla node`` exits with it)."""
        self.error = error
        self._stop.set()

    def _register(
        self, stub: fleet_pb2_grpc.FleetStub, signing: RequestSigning
    ) -> tuple[NodeIdentity, float]:
        """Register (again) with the link: the identity it knows the node by, and the
        heartbeat interval it expects. The calls on the connection from now on are
        authenticated with the session key agreed here, if the link requires signed
        requests (else it answers none, and they stay signed)."""
        assert self.key is not None
        offer = SessionOffer()
        request = fleet_pb2.RegisterNodeRequest(
            attributes=user_config_to_proto(self._attributes),
            node_config=user_config_to_proto(self._node_config),
            session_key=offer.public,
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
            return self._register(stub, signing)
        if response.session_key:
            signing.use_session(offer.agree(response.session_key, self.key.public_text))
        identity = NodeIdentity(response.node_id, response.token)
        self._store.save_identity(identity)
        return identity, response.heartbeat_interval or 30.0

    def _session_on(self, stub: fleet_pb2_grpc.FleetStub, signing: RequestSigning) -> None:
        identity, interval = self._register(stub, signing)
        self._worked = True
        self.node_id = identity.node_id
        session = Session(stub, identity.node_id, bearer_metadata(identity.token))
        self._session = session
        if self._stop.is_set():  # stop() may have missed this session
            session.close()
        self._status = NodeStatus.CONNECTED
        _log.info("node %d registered with the link at %s", identity.node_id, self._address)
        audit(self._audit, "node.registered", {"node_id": identity.node_id, "link": self._address})
        ended = threading.Event()
        beat = threading.Thread(
            target=self._heartbeat,
            args=(session, interval, ended),
            name="corolla-heartbeat",
            daemon=True,
        )
        beat.start()
        self._runner.connected(session)
        try:
            for response in session.receive():
                item = response.WhichOneof("item")
                if item == "message":
                    self._runner.submit(session, response.message)
                elif item == "run_ended":
                    notice = response.run_ended
                    self._runner.run_ended(notice.run_id, notice.reason)
        finally:
            self._runner.disconnected(session)
            self._session = None
            session.close()
            ended.set()
            beat.join()

    def _heartbeat(self, session: Session, interval: float, ended: threading.Event) -> None:
        while not ended.wait(interval) and not self._stop.is_set():
            try:
                with translate_rpc_errors():
                    response = session.stub.Heartbeat(
                        fleet_pb2.HeartbeatRequest(), metadata=session.metadata, timeout=interval
                    )
                interval = response.heartbeat_interval or interval
            except CorollaError as exc:
                _log.debug("heartbeat failed: %s", exc)
