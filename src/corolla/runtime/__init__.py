"""Deployment: ``corolla link`` (the coordinator) and ``corolla node`` (the data owners).

Laid out by role:

- :mod:`corolla.runtime.link`: :class:`Link` serves the Fleet API to nodes and the Control
  API to people and tools, keeps its state in SQLite plus a blob directory, and runs each
  run's ServerApp in a child process.
- :mod:`corolla.runtime.serverapp`: that child process, and :class:`GrpcGrid`, the Grid
  its ServerApp sees, reaching the link over its loopback ServerAppIo service.
- :mod:`corolla.runtime.node`: :class:`Node` connects outbound to a link, rejoins with the
  identity it keeps on disk, and runs the ClientApp of each message it is pushed.
- Here, what more than one role uses: :class:`ControlClient` (submit runs, follow their
  events, fetch their results) with its :class:`AccountsClient` (log in, manage accounts
  and node keys), app bundles, and the client's end of payload transfers.

The node never imports the link, nor the link the node; the link starts ServerApp
processes and so knows their command line (``tests/test_layers.py``).
"""

from ._accounts_client import AccountsClient, Login
from ._bundle import BundleLimits, install_bundle, make_bundle
from ._clock import Clock, ManualClock, SystemClock
from ._control_client import ControlClient
from .link import DEFAULT_CONTROL_ADDRESS, DEFAULT_FLEET_ADDRESS, Link, LinkLimits, LinkStatus
from .node import Node, NodeStatus
from .serverapp import GrpcGrid

__all__ = [
    "DEFAULT_CONTROL_ADDRESS",
    "DEFAULT_FLEET_ADDRESS",
    "AccountsClient",
    "BundleLimits",
    "Clock",
    "ControlClient",
    "GrpcGrid",
    "Link",
    "LinkLimits",
    "LinkStatus",
    "Login",
    "ManualClock",
    "Node",
    "NodeStatus",
    "SystemClock",
    "install_bundle",
    "make_bundle",
]
