"""The dashboard over local runs (``corolla dashboard``), served by uvicorn on a thread
of its own."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import importlib.util
import logging
import socket
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from corolla.core import ConfigError, MissingExtraError
from corolla.transport import parse_address, requires_tls

from ._server import DashboardStatus

if TYPE_CHECKING:
    import uvicorn

__all__ = ["LocalDashboard"]

_log = logging.getLogger("corolla.dashboard")

#: Seconds the server waits for its first request handlers when it starts, or for open
#: pages' event streams when it stops.
_START_S = 10.0
_STOP_S = 2.0


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
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing: asyncio.Event | None = None
        self.port = 0

    @property
    def status(self) -> DashboardStatus:
        return self._status

    @property
    def url(self) -> str:
        """Where the pages are (with the port actually bound)."""
        host = self._host.strip("[]")
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/"

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
        sock = self._bind()
        try:
            static = importlib.resources.files("corolla.dashboard") / "static"
            app = build_local_app(
                self.runs, str(static), lambda app: self._lifespan(), lambda: self._closing
            )
            config = uvicorn.Config(
                app,
                log_config=None,  # the library attaches no log handlers
                access_log=False,
                lifespan="on",
                ws="none",
                timeout_graceful_shutdown=int(_STOP_S),
            )
            server = uvicorn.Server(config)
        except BaseException:
            sock.close()
            raise
        self._server = server
        self.port = int(sock.getsockname()[1])
        self._thread = threading.Thread(
            target=self._serve, args=(server, sock), name="corolla-dashboard", daemon=True
        )
        self._thread.start()
        for _ in range(int(_START_S / 0.01)):
            if server.started or not self._thread.is_alive():
                break
            threading.Event().wait(0.01)
        if not server.started:
            self.stop()
            raise ConfigError(f"the dashboard on {self._host}:{self.port} did not start")
        self._status = DashboardStatus.RUNNING
        _log.info("dashboard of %s at %s", self.runs.directory, self.url)
        return self

    def _bind(self) -> socket.socket:
        host = self._host.strip("[]")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind((host, self._port))
            sock.listen(128)
        except OSError as exc:
            sock.close()
            raise ConfigError(
                f"cannot serve the dashboard on {self._host}:{self._port}: {exc.strerror}; "
                "choose another --address (port 0 picks a free one)"
            ) from exc
        return sock

    @contextlib.asynccontextmanager
    async def _lifespan(self) -> AsyncIterator[None]:
        self._loop = asyncio.get_running_loop()
        self._closing = asyncio.Event()
        yield

    def _serve(self, server: uvicorn.Server, sock: socket.socket) -> None:
        try:
            asyncio.run(server.serve(sockets=[sock]))
        except BaseException:
            _log.exception("the dashboard server failed")
        finally:
            sock.close()

    def stop(self) -> None:
        """Stop serving (ending open event streams) and join the thread.

        Idempotent.
        """
        if self._status is DashboardStatus.STOPPED:
            return
        self._status = DashboardStatus.STOPPED
        if self._server is not None:
            self._server.should_exit = True
            if self._loop is not None and self._closing is not None:
                with contextlib.suppress(RuntimeError):  # the loop ended already
                    self._loop.call_soon_threadsafe(self._closing.set)
        if self._thread is not None:
            self._thread.join(_START_S + _STOP_S)

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
