"""The dashboard over local runs (``corolla dashboard``), served by uvicorn on a thread
of its own."""

from __future__ import annotations

import importlib.resources
import logging
from pathlib import Path

from corolla.core import ConfigError, MissingExtraError
from corolla.transport import parse_address, requires_tls

from ._serving import PageServer, bind, require_dashboard_extra

__all__ = ["LocalDashboard"]

_log = logging.getLogger("corolla.dashboard")


class LocalDashboard(PageServer):
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
        require_dashboard_extra()
        from ._local import LocalRuns

        parsed = parse_address(address, what="--address", listen=True, example_port=8050)
        if requires_tls(str(parsed)) and not insecure:
            raise ConfigError(
                f"the dashboard at {address} would be reachable beyond this machine, and it "
                "has no accounts: keep it on 127.0.0.1, or pass --insecure to serve it there"
            )
        host, _, port = str(parsed).rpartition(":")
        super().__init__(host, int(port))
        self.runs = LocalRuns(runs)

    def start(self) -> LocalDashboard:
        """Bind the address and start serving; returns self.

        Raises
        ------
        ConfigError
            If the dashboard was started before, or the address cannot be bound.
        MissingExtraError
            If Starlette or uvicorn is not installed (the ``dashboard`` extra).
        """
        self._check_created()
        try:
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
            server = self._uvicorn_server(app)
        except BaseException:
            sock.close()
            raise
        self._serve(server, sock)
        _log.info("dashboard of %s at %s", self.runs.directory, self.url)
        return self
