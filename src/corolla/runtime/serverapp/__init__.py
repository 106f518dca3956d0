"""A run's ServerApp process, and the Grid it drives the nodes through.

The link starts ``python -m corolla.runtime.serverapp`` for each run (``_main``), with the
run's secret and config in environment variables named here. Its ServerApp sees a
:class:`GrpcGrid` (``_grid``), which reaches the link's loopback ServerAppIo service and
downloads the arrays of replies ahead of the strategy folding them (``_prefetch``).
"""

from ._grid import GrpcGrid, result_event_data
from ._main import BLOBS_ENV, RUN_CONFIG_ENV, SECRET_ENV, main

__all__ = ["BLOBS_ENV", "RUN_CONFIG_ENV", "SECRET_ENV", "GrpcGrid", "main", "result_event_data"]
