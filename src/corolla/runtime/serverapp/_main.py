"""The process that runs one run's ServerApp: ``python -m corolla.runtime.serverapp``.

Started by the link (see ``corolla.runtime.link._runs``) with the ServerAppIo address,
the run id and the installed app directory on its command line, and the run's secret
and run config in its environment. Exits 0 when the ServerApp returns; when it raises (or fails to
import), prints the traceback, emits a ``run.error`` event with the error's code, and
exits 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import traceback
from collections.abc import Sequence

import grpc

from corolla.core import Context, CorollaError, ErrorCode, Event, RecordDict
from corolla.project import AppConfig
from corolla.telemetry import Tracing
from corolla.transport import channel_options
from corolla.tuning import quiet_garbage_collector, return_freed_buffers

from ._grid import GrpcGrid

__all__ = ["BLOBS_ENV", "RUN_CONFIG_ENV", "SECRET_ENV", "main"]

#: Environment variables a ServerApp process reads: the run's secret, its run config.
SECRET_ENV = "COROLLA_SERVERAPP_SECRET"
RUN_CONFIG_ENV = "COROLLA_RUN_CONFIG"
#: Where the link's blobs are, for the ServerApp to read them in place.
BLOBS_ENV = "COROLLA_LINK_BLOBS"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="corolla-serverapp")
    parser.add_argument("--address", required=True)
    parser.add_argument("--run-id", type=int, required=True)
    parser.add_argument("--app-dir", required=True)
    args = parser.parse_args(argv)
    return_freed_buffers()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    secret = os.environ.pop(SECRET_ENV, "")
    run_config = json.loads(os.environ.get(RUN_CONFIG_ENV, "{}"))
    # The link's environment, which this process inherits, says whether to trace.
    tracing = Tracing.from_environment("corolla-serverapp")
    with (
        grpc.insecure_channel(args.address, options=channel_options()) as channel,
        tracing,  # its spans exported before the process exits
    ):
        blobs = os.environ.get(BLOBS_ENV)
        grid = GrpcGrid(channel, args.run_id, secret, link_blobs=blobs, tracing=tracing)
        try:
            app = AppConfig.load(args.app_dir)
            server = app.server_ref.load()
            quiet_garbage_collector()
            grid.emit(Event("run.app", args.run_id, data={"app": app.name}))
            server(grid, Context(args.run_id, 0, {}, run_config, RecordDict()))
        except Exception as exc:
            # A Corolla error says what went wrong (every reply failed, an app that does not
            # load): one line. Anything else is a bug of the app: its traceback.
            if isinstance(exc, CorollaError):
                print(f"error: {exc}", file=sys.stdout)
            else:
                traceback.print_exc(file=sys.stdout)
            _report(grid, args.run_id, exc)
            return 1
    return 0


def _report(grid: GrpcGrid, run_id: int, exc: Exception) -> None:
    """A ``run.error`` event with the error's code (APP_LOAD for an app that does not
    import), so the run's log says what failed without parsing the traceback."""
    code = exc.code if isinstance(exc, CorollaError) else ErrorCode.UNKNOWN
    data = {"code": int(code), "error": type(exc).__name__, "reason": str(exc)}
    # If the link is gone, the exit status and the output still tell.
    with contextlib.suppress(CorollaError):
        grid.emit(Event("run.error", run_id, data=data))
