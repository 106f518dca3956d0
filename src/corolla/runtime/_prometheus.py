"""A Prometheus ``/metrics`` endpoint served from a thread: the link's and the node's.

``prometheus_client`` serves the registry given; each scrape runs its collectors on the
server's thread, never on the caller's event loop.
"""

from __future__ import annotations

import logging
import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server
from prometheus_client.registry import CollectorRegistry

from corolla.core import ConfigError

__all__ = ["MetricsEndpoint", "split_http_address"]

_log = logging.getLogger("corolla.runtime")


def split_http_address(address: str) -> tuple[str, int]:
    """``(host, port)`` of ``HOST:PORT`` (``[IPv6]:PORT`` for IPv6).

    Raises
    ------
    ConfigError
        If ``address`` has no port, or the port is not a number from 0 to 65535.
    """
    host, colon, port = address.strip().rpartition(":")
    if not colon or not host:
        raise ConfigError(f"metrics address {address!r} is not HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"metrics address {address!r} has no port number from 0 to 65535")
    return host, int(port)


class MetricsEndpoint:
    """``registry`` served at ``/metrics`` on ``address`` from a thread, until :meth:`stop`.

    With ``certfile`` and ``keyfile``, over HTTPS.

    Raises
    ------
    ConfigError
        If ``address`` is malformed or cannot be bound.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        address: str,
        *,
        certfile: str | None = None,
        keyfile: str | None = None,
        logger: logging.Logger = _log,
    ) -> None:
        host, port = split_http_address(address)
        try:
            server, thread = start_http_server(
                port, host, registry=registry, certfile=certfile, keyfile=keyfile
            )
        except OSError as exc:
            raise ConfigError(f"cannot serve metrics on {address}: {exc}") from exc
        self._server: WSGIServer = server
        self._thread: threading.Thread = thread
        self.scheme = "https" if certfile is not None else "http"
        self.port = int(server.server_address[1])
        self.host = host
        logger.info("metrics at %s", self.url)

    @property
    def url(self) -> str:
        """Where the metrics are read, with the port actually bound."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}/metrics"

    def stop(self) -> None:
        """Stop serving and close the socket; idempotent."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()
