"""Deployment: ``corolla link`` (the coordinator) and ``corolla node`` (the data owners).

- :class:`Link` serves the Fleet API to nodes and the Control API to people and tools,
  keeps its state in SQLite plus a blob directory, and runs each run's ServerApp in a
  child process that talks to it through a :class:`GrpcGrid`.
- :class:`Node` connects outbound to a link, rejoins with the identity it keeps on disk,
  and runs the ClientApp of each message it is pushed.
- :class:`ControlClient` submits runs, follows their events and fetches their results.
"""

from ._bundle import install_bundle, make_bundle
from ._client import ControlClient, RunResult
from ._grid import GrpcGrid
from ._link import DEFAULT_CONTROL_ADDRESS, DEFAULT_FLEET_ADDRESS, Link, LinkStatus
from ._node import Node, NodeStatus

__all__ = [
    "DEFAULT_CONTROL_ADDRESS",
    "DEFAULT_FLEET_ADDRESS",
    "ControlClient",
    "GrpcGrid",
    "Link",
    "LinkStatus",
    "Node",
    "NodeStatus",
    "RunResult",
    "install_bundle",
    "make_bundle",
]
