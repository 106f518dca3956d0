"""Link: the coordinator process of a deployment (``corolla link``).

It owns the state (SQLite in WAL mode and a blob directory under its state directory),
serves the Fleet API to nodes and the Control API to people and tools, runs each run's
ServerApp in a child process that reaches it through a loopback ServerAppIo service,
and sweeps the state periodically: nodes that missed their heartbeats go offline and
messages past their TTL are answered with errors (the state does neither by itself).
Started on the state of a link that died (SIGKILL, a crash), it relaunches the ServerApp
of each run left running, which resumes from the run's last checkpoint.
"""

from __future__ import annotations

import enum
import functools
import logging
import os
import sys
import threading
from concurrent import futures
from pathlib import Path
from types import TracebackType

import grpc

from corolla.core import ConfigError
from corolla.state import (
    BlobStore,
    DirectoryBlobStore,
    LinkState,
    RunInfo,
    RunStatus,
    SqliteLinkState,
    StateDirectoryLock,
)
from corolla.telemetry import Tracing
from corolla.transport import (
    CertificateFiles,
    accounts_pb2_grpc,
    control_pb2_grpc,
    fleet_pb2_grpc,
    requires_tls,
    server_credentials,
    server_options,
    serverappio_pb2_grpc,
)
from corolla.trust import (
    DEFAULT_TOKEN_LIFETIME_S,
    Account,
    AuditLog,
    LinkPolicy,
    Tokens,
    TrustStore,
)
from corolla.tuning import malloc_trim, return_freed_buffers

from .._audit import audit, audit_many
from .._clock import Clock, SystemClock
from .._state_dir import prepare_state_dir
from ._access import AccessControl
from ._accounts import AccountsServicer
from ._admission import policy_in_force
from ._async_server import AsyncServer
from ._collection import collect_ended_runs
from ._control import ControlServicer, RunArtifactsServicer, stop_run
from ._fleet import FleetServicer
from ._flower_calls import FlowerCallRefusal, control_refusal, fleet_refusal
from ._handlers import add_servicer
from ._limits import LinkLimits
from ._metrics import MetricsServer, split_http_address
from ._resources import LinkResources
from ._runs import RunProcesses
from ._serverappio import ServerAppIoServicer
from ._traffic import Traffic

__all__ = ["DEFAULT_CONTROL_ADDRESS", "DEFAULT_FLEET_ADDRESS", "Link", "LinkStatus"]

_log = logging.getLogger("corolla.runtime.link")

DEFAULT_FLEET_ADDRESS = "127.0.0.1:9092"
DEFAULT_CONTROL_ADDRESS = "127.0.0.1:9093"
_UNLAUNCHED = "the link restarted before the run started"


class LinkStatus(enum.Enum):
    """Where a :class:`Link` is in its life: created -> running -> stopped."""

    CREATED = "created"
    RUNNING = "running"
    STOPPED = "stopped"


class Link:
    """A link serving on ``fleet_address`` (nodes) and ``control_address`` (users).

    Parameters
    ----------
    state_dir
        Holds ``state.db``, ``blobs/`` and the installed apps, created if missing; reuse
        it to keep nodes and runs across restarts.
    certificates
        A directory written by :func:`corolla.transport.generate_certificates`; the link
        serves TLS with its ``link.pem`` and ``link.key`` (on loopback too). The
        ServerAppIo service of the run processes stays on loopback, without TLS.
    insecure
        Serve without TLS even off loopback.
    metrics_address
        Where to serve Prometheus metrics (``HOST:PORT``, see ``_metrics``); none if None.
        Over HTTPS when the link has ``certificates``.
    state
        The state to keep nodes, runs and messages in, instead of ``state_dir/state.db``;
        the link closes it when it stops.
    blobs
        The blob store, instead of the directory ``state_dir/blobs``. The ServerApps the
        link starts read arrays in place only from a :class:`DirectoryBlobStore`.
    clock
        Where the link reads the time (the machine's clocks by default); a state the link
        opens itself reads its wall-clock time there too.
    limits
        How much the link holds at once and how long it waits (heartbeats, sweeps,
        stream slots, grace periods).
    python
        The interpreter that runs the ServerApp processes.
    auth
        Admit only nodes whose keys an admin registered, each of their requests signed,
        and Control callers with an account's token (see ``docs/security.md``).
    federation
        The name of the federation this link serves: the tokens it issues name it.
    node_certificates
        Require of nodes a client certificate signed by the CA of ``certificates``
        (``ca.pem``): mutual TLS on the Fleet API.
    token_lifetime
        Seconds an account's token is valid after ``corolla login``.
    policy
        Which nodes may register and which apps may run (see ``docs/security.md``);
        by default every node and app.
    tracing
        The link's spans of the messages it stores and passes on (see
        ``corolla.telemetry``); None for what the environment configures (started
        with the link, and stopped with it).

    Raises
    ------
    ConfigError
        If an address beyond loopback has neither certificates nor ``insecure``.
    """

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        *,
        fleet_address: str = DEFAULT_FLEET_ADDRESS,
        control_address: str = DEFAULT_CONTROL_ADDRESS,
        certificates: str | os.PathLike[str] | None = None,
        insecure: bool = False,
        metrics_address: str | None = None,
        state: LinkState | None = None,
        blobs: BlobStore | None = None,
        clock: Clock | None = None,
        limits: LinkLimits | None = None,
        python: str = sys.executable,
        auth: bool = False,
        federation: str = "default",
        node_certificates: bool = False,
        token_lifetime: float = DEFAULT_TOKEN_LIFETIME_S,
        policy: LinkPolicy | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self._tracing = tracing
        self._own_tracing: Tracing | None = None
        addresses = [fleet_address, control_address]
        _check_distinct_ports(fleet_address, control_address, metrics_address)
        if metrics_address is not None:
            split_http_address(metrics_address)  # refused here, before anything starts
            addresses.append(metrics_address)
        for address in addresses:
            if requires_tls(address) and certificates is None and not insecure:
                raise ConfigError(
                    f"{address} is reachable beyond this machine: give --certificates DIR "
                    "(see `corolla certs`) or --insecure"
                )
        if node_certificates and certificates is None:
            raise ConfigError(
                "node certificates are checked over TLS: give --certificates DIR with "
                "--require-node-certificates"
            )
        self.state_dir = Path(state_dir).resolve()
        self._fleet_address = fleet_address
        self._control_address = control_address
        self._metrics_address = metrics_address
        self._metrics: MetricsServer | None = None
        self._certificates = None if certificates is None else CertificateFiles(Path(certificates))
        self._state = state
        self._blobs = blobs
        self._clock = clock or SystemClock()
        self.limits = limits or LinkLimits()
        self._python = python
        self._auth = auth
        self._node_certificates = node_certificates
        self._federation = federation
        self._token_lifetime = token_lifetime
        self._policy = policy
        self._status = LinkStatus.CREATED
        self._stopped = threading.Event()
        self._servers: list[grpc.Server] = []
        self._fleet: AsyncServer | None = None
        self._sweeper: threading.Thread | None = None
        self._shared: LinkResources | None = None
        self._accounts: AccountsServicer | None = None
        self._lock: StateDirectoryLock | None = None
        self._runs: RunProcesses | None = None
        self._appio_address = ""
        self.fleet_port = 0
        self.control_port = 0

    @property
    def status(self) -> LinkStatus:
        return self._status

    @property
    def fleet_address(self) -> str:
        """The address nodes connect to (with the port actually bound)."""
        return f"{self._fleet_address.rpartition(':')[0]}:{self.fleet_port}"

    @property
    def control_address(self) -> str:
        """The address Control clients connect to (with the port actually bound)."""
        return f"{self._control_address.rpartition(':')[0]}:{self.control_port}"

    @property
    def metrics_url(self) -> str | None:
        """Where Prometheus reads the metrics (with the port actually bound); None if the
        link serves none."""
        return None if self._metrics is None else self._metrics.url

    def _bind(
        self, server: grpc.Server | grpc.aio.Server, address: str, *, nodes: bool = False
    ) -> int:
        if self._certificates is not None:
            client_ca = None
            if nodes and self._node_certificates:
                client_ca = self._certificates.ca_certificate
            credentials = server_credentials(
                self._certificates.link_certificate,
                self._certificates.link_key,
                client_ca=client_ca,
            )
            add = functools.partial(server.add_secure_port, address, credentials)
        else:
            add = functools.partial(server.add_insecure_port, address)
        try:
            port = add()
        except RuntimeError:  # gRPC's "Failed to bind": the reason went to its own log
            port = 0
        if port == 0:
            raise ConfigError(
                f"cannot listen on {address}: the port is in use (another link?) or the "
                "address is not this machine's; choose another address"
            )
        return port

    def start(self) -> Link:
        """Open the state, start serving and sweeping; returns self.

        Raises
        ------
        ConfigError
            If the link was started before or an address cannot be bound.
        StateInUseError
            If another process holds the state directory (another link).
        StorageError
            If the state cannot be opened (a damaged database is refused).
        """
        if self._status is not LinkStatus.CREATED:
            raise ConfigError(f"a link is started once; this one is {self._status.value}")
        # One link per state directory: a second one would resume the first one's runs.
        self._lock = StateDirectoryLock(prepare_state_dir(self.state_dir))
        try:
            state = self._state or SqliteLinkState(
                self.state_dir / "state.db", clock=self._clock.time
            )
        except BaseException:
            self._lock.close()
            raise
        return_freed_buffers()
        limits = self.limits
        try:
            blobs = self._blobs or DirectoryBlobStore(self.state_dir / "blobs")
            tracing = self._tracing
            if tracing is None:
                tracing = self._own_tracing = Tracing.from_environment("corolla-link")
            shared = LinkResources.create(
                state,
                blobs,
                self.state_dir / "apps",
                limits,
                self._clock,
                auth=self._auth,
                federation=self._federation,
                tracing=tracing,
            )
            self._shared = shared
            shared.policy = policy_in_force(shared, self._policy)
            self._runs = runs = RunProcesses(shared, python=self._python)
            failed = self._fail_unlaunched_runs()
            self._fleet = fleet = AsyncServer(
                "corolla-fleet",
                server_options(),
                limits.fleet_workers,
                limits.fleet_upload_workers,
            )
            fleet.run(
                lambda: add_servicer(
                    fleet_pb2_grpc.add_FleetServicer_to_server,
                    FleetServicer(shared, fleet.executor, fleet.stream_executor),
                    fleet.server,
                )
            )
            tokens = Tokens(
                shared.trust.secret("token-key"),
                self._federation,
                lifetime=self._token_lifetime,
                clock=self._clock.time,
            )
            access = AccessControl(shared, tokens)
            # Every call on the control port passes the access check (see _access).
            control = grpc.server(
                futures.ThreadPoolExecutor(limits.control_workers, "corolla-control"),
                options=server_options(),
                interceptors=[access.interceptor()],
            )
            add_servicer(
                control_pb2_grpc.add_ControlServicer_to_server,
                ControlServicer(shared, runs),
                control,
            )
            self._accounts = AccountsServicer(shared, access)
            add_servicer(accounts_pb2_grpc.add_AccountsServicer_to_server, self._accounts, control)
            add_servicer(
                serverappio_pb2_grpc.add_RunArtifactsServicer_to_server,
                RunArtifactsServicer(shared),
                control,
            )
            appio = grpc.server(
                futures.ThreadPoolExecutor(limits.control_workers, "corolla-appio"),
                options=server_options(),
            )
            add_servicer(
                serverappio_pb2_grpc.add_ServerAppIoServicer_to_server,
                ServerAppIoServicer(shared, runs),
                appio,
            )
            self._servers = [control, appio]
            self.fleet_port = fleet.run(
                lambda: self._bind(fleet.server, self._fleet_address, nodes=True)
            )
            self.control_port = self._bind(control, self._control_address)
            # After Corolla's services, and once the ports are known: a call meant for a
            # Flower SuperLink is told what to use instead.
            fleet_refused = FlowerCallRefusal(fleet_refusal(self.fleet_address), aio=True)
            fleet.run(lambda: fleet.server.add_generic_rpc_handlers((fleet_refused,)))
            control.add_generic_rpc_handlers(
                (FlowerCallRefusal(control_refusal(self.control_address)),)
            )
            appio_port = appio.add_insecure_port("127.0.0.1:0")
            self._appio_address = f"127.0.0.1:{appio_port}"
            runs.set_address(self._appio_address)
            if self._metrics_address is not None:
                self._metrics = MetricsServer(shared, self._metrics_address, self._certificates)
            # Before serving: the first record of this start, ahead of any node's.
            self._audit_start(failed)
            fleet.start()
            for server in self._servers:
                server.start()
            self._resume_orphaned_runs()
        except BaseException:
            if self._runs is not None:
                self._runs.close()
            if self._fleet is not None:
                self._fleet.stop(0)
            for server in self._servers:
                server.stop(None)
            if self._metrics is not None:
                self._metrics.stop()
            if self._shared is not None:
                audit(self._shared.audit, "link.stop", {"reason": "the link failed to start"})
                self._shared.audit.close()
                self._shared.trust.close()
            state.close()
            self._lock.close()
            self._status = LinkStatus.STOPPED
            raise
        self._sweeper = threading.Thread(target=self._sweep, name="corolla-sweep", daemon=True)
        self._sweeper.start()
        self._status = LinkStatus.RUNNING
        _log.info(
            "link serving fleet on %s, control on %s", self.fleet_address, self.control_address
        )
        return self

    def _fail_unlaunched_runs(self) -> list[int]:
        # A run left pending by an earlier link process was never answered to its
        # submitter; it ends here.
        assert self._shared is not None
        state = self._shared.state
        failed = []
        for run in state.list_runs(status=RunStatus.PENDING):
            state.update_run_status(run.run_id, RunStatus.FAILED, error=_UNLAUNCHED)
            failed.append(run.run_id)
        return failed

    def _audit_start(self, failed: list[int]) -> None:
        """Record the link's start, and the runs it failed as it started."""
        assert self._shared is not None
        audit(
            self._shared.audit,
            "link.start",
            {
                "fleet": self.fleet_address,
                "control": self.control_address,
                "metrics": self.metrics_url,
                "tls": self._certificates is not None,
                "auth": self._auth,
                "federation": self._federation,
            },
        )
        failure = {"status": RunStatus.FAILED.value, "reason": _UNLAUNCHED}
        audit_many(self._shared.audit, (("run.end", {"run_id": r, **failure}) for r in failed))

    def _resume_orphaned_runs(self) -> None:
        # A run whose ServerApp belonged to an earlier link process (killed, crashed) gets
        # a new one, which goes on from the run's last checkpoint.
        assert self._shared is not None and self._runs is not None
        state = self._shared.state
        for status in (RunStatus.STARTING, RunStatus.RUNNING):
            for run in state.list_runs(status=status):
                _log.info("resuming run %d from its last checkpoint", run.run_id)
                # The dead ServerApp's messages still waiting for nodes would make them
                # train for nobody: the new ServerApp sends its own from the checkpoint.
                abandoned = state.abandon_run_messages(
                    run.run_id, f"run {run.run_id}'s ServerApp restarted with the link"
                )
                if abandoned:
                    _log.info("run %d: %d earlier messages abandoned", run.run_id, len(abandoned))
                self._runs.resume(run)

    def _sweep(self) -> None:
        assert self._shared is not None
        shared = self._shared
        try:  # what ended runs left when an earlier link process stopped
            collected = collect_ended_runs(shared, self._stopped)
            if collected.blobs or collected.reply_contents:
                _log.info("collected ended runs: %s", collected)
        except Exception:
            _log.warning("collecting ended runs failed", exc_info=True)
        trimmed_after: float | None = None  # the end of the transfers last trimmed after
        while not self._stopped.wait(shared.limits.sweep_interval):
            idle_since = shared.traffic.idle_since()
            if (
                idle_since is not None
                and idle_since != trimmed_after
                and shared.clock.monotonic() - idle_since >= shared.limits.idle_trim_s
            ):
                malloc_trim()
                trimmed_after = idle_since
            try:
                offline = shared.state.mark_stale_nodes_offline()
                expired = shared.state.expire_messages()
            except Exception:
                _log.warning("state sweep failed", exc_info=True)
                continue
            if offline:
                audit_many(
                    shared.audit,
                    (("node.leave", {"node_id": n, "why": "missed heartbeats"}) for n in offline),
                )
            if offline or expired:
                _log.info("sweep: nodes offline %s, %d messages expired", offline, len(expired))
                # Error replies were stored for runs we cannot name cheaply: wake them all.
                shared.signals.notify_all()

    @property
    def state(self) -> LinkState:
        """The link's state store (while running).

        Raises
        ------
        ConfigError
            If the link is not running.
        """
        return self._running().state

    @property
    def trust(self) -> TrustStore:
        """The link's accounts and registered node keys (while running).

        Raises
        ------
        ConfigError
            If the link is not running.
        """
        return self._running().trust

    @property
    def audit(self) -> AuditLog:
        """The link's audit log (while running).

        Raises
        ------
        ConfigError
            If the link is not running.
        """
        return self._running().audit

    @property
    def blobs(self) -> BlobStore:
        """The link's blob store (while running).

        Raises
        ------
        ConfigError
            If the link is not running.
        """
        return self._running().blobs

    @property
    def auth(self) -> bool:
        """Whether Control callers need an account (``corolla link --auth``)."""
        return self._auth

    def traffic(self) -> list[Traffic]:
        """The array bytes the link moved each way so far, and the seconds it took.

        Raises
        ------
        ConfigError
            If the link is not running.
        """
        return self._running().traffic.totals()

    def check_login(self, name: str, password: str, *, peer: str, via: str) -> Account:
        """The account ``name`` if ``password`` is its password, for a login that came
        ``via`` another way than the Accounts API (the dashboard): throttled with that
        API's logins, and recorded in the audit log as they are (``login``,
        ``login.failed``).

        Raises
        ------
        AuthenticationError
            If the name is refused for now (too many failures), or the name or password
            is wrong.
        ConfigError
            If the link is not running.
        """
        shared = self._running()
        if self._accounts is None:
            raise ConfigError("the link is not running")
        account = self._accounts.check_password(name, password, peer)
        record = {"role": account.role.value, "via": via, "peer": peer}
        audit(shared.audit, "login", record, actor=name)
        return account

    def stop_run(self, run_id: int, reason: str, *, actor: str) -> RunInfo:
        """Stop a run as ``corolla stop`` does, recorded in the audit log as ``actor``'s
        doing; returns the run. A run that already ended stays as it was.

        Raises
        ------
        ConfigError
            If the link is not running.
        UnknownRunError
            If there is no such run.
        """
        shared = self._running()
        assert self._runs is not None
        return stop_run(shared, self._runs, run_id, reason, actor)

    @property
    def serverappio_address(self) -> str:
        """The loopback address where ServerApp processes reach the link."""
        self._running()
        return self._appio_address

    def issue_run_secret(self, run_id: int) -> str:
        """A secret with which a :class:`GrpcGrid` serves run ``run_id`` from outside the
        link's own run processes (an embedded ServerApp, a benchmark, a test).

        Raises
        ------
        ConfigError
            If the link is not running.
        """
        self._running()
        assert self._runs is not None
        return self._runs.issue_secret(run_id)

    def _running(self) -> LinkResources:
        if self._status is not LinkStatus.RUNNING or self._shared is None:
            raise ConfigError(f"the link is {self._status.value}, not running")
        return self._shared

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the link is stopped (or ``timeout``); True if it stopped."""
        return self._stopped.wait(timeout)

    def stop(self) -> None:
        """Stop serving, end the run processes, join the threads, close the state.

        Idempotent.
        """
        if self._status is LinkStatus.STOPPED:
            return
        self._status = LinkStatus.STOPPED
        self._stopped.set()
        if self._shared is not None:
            self._shared.signals.close()
        grace = self.limits.stop_grace_s
        events = [server.stop(grace) for server in self._servers]
        if self._fleet is not None:
            self._fleet.stop(grace)
        if self._runs is not None:
            self._runs.close()
        for event in events:
            event.wait(grace * 2)
        if self._sweeper is not None:
            self._sweeper.join()
        if self._metrics is not None:
            self._metrics.stop()
        if self._own_tracing is not None:
            self._own_tracing.shutdown()
        if self._shared is not None:
            self._shared.state.close()
            self._shared.blobs.close()
            audit(self._shared.audit, "link.stop")
            self._shared.audit.close()
            self._shared.trust.close()
        if self._lock is not None:
            self._lock.close()

    def __enter__(self) -> Link:
        if self._status is LinkStatus.CREATED:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _check_distinct_ports(fleet: str, control: str, metrics: str | None) -> None:
    """Refuse two of the link's services on one port: gRPC would serve both APIs there,
    and clients of one would reach the other.

    Raises
    ------
    ConfigError
        If two addresses name the same port (other than 0, which picks a free one).
    """
    named = {"--fleet-address": fleet, "--control-address": control}
    if metrics is not None:
        named["--metrics-address"] = metrics
    seen: dict[str, str] = {}
    for flag, address in named.items():
        port = address.rpartition(":")[2]
        if port in ("", "0"):
            continue
        if port in seen:
            raise ConfigError(
                f"{seen[port]} and {flag} both use port {port}: each API needs a port of its "
                "own (by default fleet 9092, control 9093)"
            )
        seen[port] = flag
