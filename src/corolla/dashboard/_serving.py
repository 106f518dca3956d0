"""What both dashboards share: a socket bound as a page server wants it, uvicorn serving
on a thread of its own, with its own event loop, stopped on request, and the life of a
dashboard around them (:class:`PageServer`)."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import enum
import importlib.util
import logging
import socket
import threading
from collections.abc import AsyncIterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from corolla.core import ConfigError, MissingExtraError

if TYPE_CHECKING:
    import uvicorn

__all__ = [
    "STOP_S",
    "DashboardStatus",
    "PageServer",
    "ServerThread",
    "bind",
    "page_url",
    "require_dashboard_extra",
]

_log = logging.getLogger("corolla.dashboard")

P = TypeVar("P", bound="PageServer")

#: Seconds the server waits for its first request handlers when it starts, or for open
#: pages' event streams when it stops.
START_S = 10.0
STOP_S = 2.0


def page_url(scheme: str, host: str, port: int) -> str:
    """The pages' address: ``scheme://host:port/``, an IPv6 host in brackets."""
    host = host.strip("[]")
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}:{port}/"


def bind(host: str, port: int, option: str) -> socket.socket:
    """A listening TCP socket on ``host:port``.

    Raises
    ------
    ConfigError
        If the address cannot be bound, naming ``option`` (the flag that chose it).
    """
    bare = host.strip("[]")
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Inherited by each connection: a response's head and body go out at once, not
        # 40 ms apart (Nagle's algorithm waiting for a delayed acknowledgement).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((bare, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot serve the dashboard on {host}:{port}: {exc.strerror}; choose another "
            f"{option} (port 0 picks a free one)"
        ) from exc
    return sock


class ServerThread:
    """uvicorn serving on a thread of its own: it never runs on, nor waits for, the
    event loop of whoever starts it (the link's)."""

    def __init__(self) -> None:
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Set when the server stops: open event streams end.
        self.closing: asyncio.Event | None = None

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """The app's lifespan: it learns the server's loop and makes :attr:`closing`."""
        self._loop = asyncio.get_running_loop()
        self.closing = asyncio.Event()
        yield

    def start(self, server: uvicorn.Server, sock: socket.socket, where: str) -> None:
        """Serve ``server`` on ``sock`` (closed when serving ends), and wait until it
        answers.

        Raises
        ------
        ConfigError
            If it does not start in time, naming ``where``.
        """
        self._server = server
        self._thread = threading.Thread(
            target=self._serve, args=(server, sock), name="corolla-dashboard", daemon=True
        )
        self._thread.start()
        for _ in range(int(START_S / 0.01)):
            if server.started or not self._thread.is_alive():
                break
            threading.Event().wait(0.01)
        if not server.started:
            self.stop()
            raise ConfigError(f"the dashboard on {where} did not start")

    def _serve(self, server: uvicorn.Server, sock: socket.socket) -> None:
        try:
            asyncio.run(server.serve(sockets=[sock]))
        except BaseException:
            _log.exception("the dashboard server failed")
        finally:
            sock.close()

    def stop(self) -> None:
        """Stop serving (ending open event streams) and join the thread. Idempotent."""
        if self._server is not None:
            self._server.should_exit = True
            if self._loop is not None and self.closing is not None:
                with contextlib.suppress(RuntimeError):  # the loop ended already
                    self._loop.call_soon_threadsafe(self.closing.set)
        if self._thread is not None:
            self._thread.join(START_S + STOP_S)


def require_dashboard_extra() -> None:
    """Check that Starlette and uvicorn can be imported.

    Raises
    ------
    MissingExtraError
        If one is not installed (the ``dashboard`` extra).
    """
    for package in ("starlette", "uvicorn"):
        if importlib.util.find_spec(package) is None:
            raise MissingExtraError(package, "dashboard")


class DashboardStatus(enum.Enum):
    """Where a dashboard is in its life: created -> running -> stopped."""

    CREATED = "created"
    RUNNING = "running"
    STOPPED = "stopped"


class PageServer(abc.ABC):
    """The life of a dashboard on ``host:port``: started once, serving uvicorn on a
    :class:`ServerThread`, stopped once (also as a context manager). Subclasses build the
    app in :meth:`start`."""

    def __init__(self, host: str, port: int, scheme: str = "http") -> None:
        self._host = host
        self._port = port
        self._scheme = scheme
        self._status = DashboardStatus.CREATED
        self._serving = ServerThread()
        #: The port actually bound, once started.
        self.port = 0

    @property
    def status(self) -> DashboardStatus:
        return self._status

    @property
    def url(self) -> str:
        """Where the pages are (with the port actually bound)."""
        return page_url(self._scheme, self._host, self.port)

    def _check_created(self) -> None:
        """Raises ConfigError unless the dashboard was never started."""
        if self._status is not DashboardStatus.CREATED:
            raise ConfigError(f"a dashboard is started once; this one is {self._status.value}")

    @staticmethod
    def _uvicorn_server(app: Any, **options: Any) -> uvicorn.Server:
        """uvicorn serving ``app`` as the dashboards do (``options``: TLS files).

        Raises
        ------
        MissingExtraError
            If uvicorn is not installed (the ``dashboard`` extra).
        """
        try:
            import uvicorn
        except ImportError as exc:
            raise MissingExtraError("uvicorn", "dashboard") from exc

        config = uvicorn.Config(
            app,
            log_config=None,  # the library attaches no log handlers
            access_log=False,
            lifespan="on",
            ws="none",
            timeout_graceful_shutdown=int(STOP_S),
            **options,
        )
        # Off the main thread, uvicorn leaves Ctrl-C and SIGTERM to the command.
        return uvicorn.Server(config)

    def _serve(self, server: uvicorn.Server, sock: socket.socket) -> None:
        """Serve ``server`` on ``sock``; the dashboard is then running.

        Raises
        ------
        ConfigError
            If it does not start in time.
        """
        self.port = int(sock.getsockname()[1])
        self._serving.start(server, sock, f"{self._host}:{self.port}")
        self._status = DashboardStatus.RUNNING

    def stop(self) -> None:
        """Stop serving (ending open event streams) and join the thread.

        Idempotent.
        """
        if self._status is DashboardStatus.STOPPED:
            return
        self._status = DashboardStatus.STOPPED
        self._serving.stop()

    @abc.abstractmethod
    def start(self: P) -> P:
        """Bind the address and start serving; returns self."""

    def __enter__(self: P) -> P:
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
