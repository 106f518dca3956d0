"""The web dashboard of a link (``corolla link --dashboard-address HOST:PORT``).

:class:`Dashboard` serves, from a thread of its own, a page of runs, a page per run (live
curves, the rounds, which nodes took part, events, stop, downloads), nodes, runs compared,
and the federation's traffic. It reads the link's state through read-only connections
(``corolla.state.SqliteStateViews``); its scripts and styles ship in the package, so it
works without access to the internet. Needs the ``dashboard`` extra (Starlette, uvicorn).

:class:`LocalDashboard` serves the same pages over the runs ``corolla run`` wrote on this
machine (``corolla dashboard``), read from their output directories.
"""

from ._local_server import LocalDashboard
from ._server import Dashboard, DashboardStatus

__all__ = ["Dashboard", "DashboardStatus", "LocalDashboard"]
