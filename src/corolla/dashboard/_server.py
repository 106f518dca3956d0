"""The dashboard of a running link, served by uvicorn on a thread of its own.

The server runs its own event loop on its own thread, reads the state through
:class:`~corolla.state.SqliteStateViews` (read-only connections of its own, on
Starlette's thread pool), and calls the link only to stop a run, to read a final array
and to read its traffic counters: a page being loaded never holds the link's gRPC
servers, its event loop or its state's lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from corolla.core import ConfigError, MissingExtraError
from corolla.runtime import Link
from corolla.state import SqliteStateViews
from corolla.transport import CertificateFiles, parse_address, requires_tls
from corolla.trust import Account

from ._federation import FederationSamples
from ._serving import DashboardStatus, PageServer, bind, require_dashboard_extra
from ._sessions import Sessions

__all__ = ["Dashboard", "DashboardStatus"]

_log = logging.getLogger("corolla.dashboard")


class Dashboard(PageServer):
    """The web dashboard of ``link`` (a running :class:`~corolla.runtime.Link`) on
    ``address``, ``HOST:PORT`` (port 0: any free port).

    Parameters
    ----------
    link
        The running link whose runs, nodes and traffic the pages show.
    address
        Where to serve the pages.
    certificates
        Serve HTTPS with the link's certificate (``link.pem``, ``link.key``) from this
        directory (see ``corolla certs``).
    insecure
        Serve plain HTTP even beyond loopback.
    sample_interval
        Seconds between two samples of the link's traffic and nodes (the federation page).

    Raises
    ------
    ConfigError
        If ``address`` is malformed, or reachable beyond this machine without
        ``certificates`` or ``insecure``.
    MissingExtraError
        If Starlette or uvicorn is not installed (the ``dashboard`` extra).
    """

    def __init__(
        self,
        link: Link,
        address: str,
        *,
        certificates: str | Path | None = None,
        insecure: bool = False,
        sample_interval: float = 2.0,
    ) -> None:
        require_dashboard_extra()
        parsed = parse_address(address, what="--dashboard-address", listen=True, example_port=8080)
        if requires_tls(str(parsed)) and certificates is None and not insecure:
            raise ConfigError(
                f"the dashboard at {address} is reachable beyond this machine: give "
                "--certificates DIR (see `corolla certs`) or --insecure"
            )
        host, _, port = str(parsed).rpartition(":")
        super().__init__(host, int(port), "http" if certificates is None else "https")
        self._link = link
        self._certificates = None if certificates is None else CertificateFiles(Path(certificates))
        self._sample_interval = sample_interval
        self._views: SqliteStateViews | None = None

    def start(self) -> Dashboard:
        """Bind the address and start serving; returns self.

        Raises
        ------
        ConfigError
            If the dashboard was started before, the link is not running, or the
            address cannot be bound.
        MissingExtraError
            If Starlette or uvicorn is not installed (the ``dashboard`` extra).
        StorageError
            If the link's state database cannot be read.
        """
        self._check_created()
        try:
            from ._app import DashboardSource, build_app
        except ImportError as exc:
            raise MissingExtraError(exc.name or "starlette", "dashboard") from exc
        link = self._link
        state = link.state  # raises unless the link is running
        views = SqliteStateViews(link.state_dir / "state.db")
        sock = bind(self._host, self._port, "--dashboard-address")
        try:

            def node_counts() -> tuple[int, int]:
                totals = views.totals()
                return totals.nodes_online, totals.nodes

            federation = FederationSamples(link.traffic, node_counts)
            source = DashboardSource(
                views=views,
                stop_run=lambda run_id, reason, actor: link.stop_run(run_id, reason, actor=actor),
                open_blob=link.blobs.open,
                federation=federation,
                sessions=Sessions(link.trust, _dashboard_login(link)) if link.auth else None,
                https=self._certificates is not None,
            )
            static = importlib.resources.files("corolla.dashboard") / "static"
            app = build_app(source, str(static), lambda app: self._lifespan(source, federation))
            ssl: dict[str, Any] = {}
            if self._certificates is not None:
                ssl = {
                    "ssl_certfile": str(self._certificates.link_certificate),
                    "ssl_keyfile": str(self._certificates.link_key),
                }
            server = self._uvicorn_server(app, **ssl)
        except BaseException:
            sock.close()
            views.close()
            raise
        del state
        self._views = views
        self._serve(server, sock)
        _log.info("dashboard at %s", self.url)
        return self

    @contextlib.asynccontextmanager
    async def _lifespan(self, source: Any, federation: FederationSamples) -> AsyncIterator[None]:
        async with self._serving.lifespan():
            source.closing = self._serving.closing

            async def sample() -> None:
                while True:
                    try:
                        await asyncio.to_thread(federation.take)
                    except Exception:
                        _log.warning("sampling the federation failed", exc_info=True)
                    await asyncio.sleep(self._sample_interval)

            sampler = asyncio.create_task(sample())
            try:
                yield
            finally:
                sampler.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sampler

    def stop(self) -> None:
        """Stop serving (ending open event streams), join the thread, close the views.

        Idempotent.
        """
        super().stop()
        if self._views is not None:
            self._views.close()
            self._views = None


def _dashboard_login(link: Link) -> Callable[[str, str, str], Account]:
    def check(name: str, password: str, peer: str) -> Account:
        return link.check_login(name, password, peer=peer, via="dashboard")

    return check
