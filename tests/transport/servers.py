"""A real gRPC server on 127.0.0.1 for the tests, started and stopped explicitly."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from concurrent import futures

import grpc

from corolla.transport import server_options


@contextlib.contextmanager
def serve(
    register: Callable[[grpc.Server], None],
    credentials: grpc.ServerCredentials | None = None,
) -> Iterator[int]:
    """Run a server with the servicers ``register`` adds; yield its port."""
    executor = futures.ThreadPoolExecutor(max_workers=4)
    server = grpc.server(executor, options=server_options())
    register(server)
    address = "127.0.0.1:0"
    if credentials is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, credentials)
    server.start()
    try:
        yield port
    finally:
        server.stop(grace=None).wait()
        executor.shutdown(wait=True)
