"""The dashboard over local runs (``corolla dashboard``), served by uvicorn on a thread
of its own."""

from __future__ import annotations

import importlib.resources
import importlib.util
import logging
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from corolla.core import ConfigError, MissingExtraError
from corolla.transport import parse_address, requires_tls

from ._server import DashboardStatus
from ._serving import STOP_S, ServerThread, bind, page_url

if TYPE_CHECKING:
    pass

__all__ = ["LocalDashboard"]

_log = logging.getLogger("corolla.dashboard")


class LocalDashboard:
    """The dashboard of the runs in ``runs`` (the output directories of ``corolla run``)
    on ``address``, ``HOST:PORT`` (port 0: any free port).

    Parameters
    ----------
    runs
        The directory holding runs: each subdirectory with a ``run.json`` is one.
    address
        Where to serve the pages.
    insecure
        Serve beyond loopback (there are no accounts: anyone who reaches the address
        sees the runs).

    Raises
    ------
    ConfigError
        If ``runs`` is not a directory of runs, or ``address`` is malformed or reachable
        beyond this machine without ``insecure``.
    MissingExtraError
        If Starlette or uvicorn is not installed (the ``dashboard`` extra).
    """

    def __init__(self, runs: str | Path, address: str, *, insecure: bool = False) -> None:
        for package in ("starlette", "uvicorn"):
            if importlib.util.find_spec(package) is None:
                raise MissingExtraError(package, "dashboard")
        from ._local import LocalRuns

        parsed = parse_address(address, what="--address", listen=True, example_port=8050)
        if requires_tls(str(parsed)) and not insecure:
            raise ConfigError(
                f"the dashboard at {address} would be reachable beyond this machine, and it "
                "has no accounts: keep it on 127.0.0.1, or pass --insecure to serve it there"
            )
        self._host, _, port = str(parsed).rpartition(":")
        self._port = int(port)
        self.runs = LocalRuns(runs)
        self._status = DashboardStatus.CREATED
        self._serving = ServerThread()
        self.port = 0

    @property
    def status(self) -> DashboardStatus:
        return self._status

    @property
    def url(self) -> str:
        """Where the pages are (with the port actually bound)."""
        return page_url("http", self._host, self.port)

    def start(self) -> LocalDashboard:
        """Bind the address and start serving; returns self.

        Raises
        ------
        ConfigError
            If the dashboard was started before, or the address cannot be bound.
        MissingExtraError
            If Starlette or uvicorn is not installed (the ``dashboard`` extra).
        """
        if self._status is not DashboardStatus.CREATED:
            raise ConfigError(f"a dashboard is started once; this one is {self._status.value}")
        try:
            import uvicorn

            from ._local import build_local_app
        except ImportError as exc:
            raise MissingExtraError(exc.name or "starlette", "dashboard") from exc
        sock = bind(self._host, self._port, "--address")
        try:
            static = importlib.resources.files("corolla.dashboard") / "static"
            serving = self._serving
            app = build_local_app(
                self.runs, str(static), lambda app: serving.lifespan(), lambda: serving.closing
            )
            config = uvicorn.Config(
                app,
                log_config=None,  # the library attaches no log handlers
                access_log=False,
                lifespan="on",
                ws="none",
                timeout_graceful_shutdown=int(STOP_S),
            )
            server = uvicorn.Server(config)
        except BaseException:
            sock.close()
            raise
        self.port = int(sock.getsockname()[1])
        self._serving.start(server, sock, f"{self._host}:{self.port}")
        self._status = DashboardStatus.RUNNING
        _log.info("dashboard of %s at %s", self.runs.directory, self.url)
        return self

    def stop(self) -> None:
        """Stop serving (ending open event streams) and join the thread.

        Idempotent.
        """
        if self._status is DashboardStatus.STOPPED:
            return
        self._status = DashboardStatus.STOPPED
        self._serving.stop()

    def __enter__(self) -> LocalDashboard:
        if self._status is DashboardStatus.CREATED:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
