"""The link: the coordinator of a deployment (``corolla link``).

- :class:`Link` owns the state and the blob directory and serves three gRPC services:
  Fleet for nodes (``_fleet``), Control for people and tools (``_control``), and
  ServerAppIo on loopback for the run processes it starts (``_serverappio``, ``_runs``).
  A call to one of Flower's SuperLink services on the fleet or control port is answered
  with what to use instead (``_flower_calls``).
- The services share :class:`LinkResources`: the state, the blobs, the names clients
  hold on blobs (``_names``), message contents (``_contents``), wake-ups (``_wakeups``),
  the traffic meter (``_traffic``).
- Who may call what on the control port is checked in one place (``_access``), against
  accounts an admin manages through the Accounts service (``_accounts``); the first admin
  is made on the link's machine (``_bootstrap``).
- Blobs no run needs any more are deleted by collections (``_collection``); Prometheus
  metrics are served by ``_metrics``.
"""

from ._bootstrap import bootstrap_admin, check_no_admin, has_admin
from ._limits import LinkLimits
from ._link import DEFAULT_CONTROL_ADDRESS, DEFAULT_FLEET_ADDRESS, Link, LinkStatus
from ._resources import LinkResources

__all__ = [
    "DEFAULT_CONTROL_ADDRESS",
    "DEFAULT_FLEET_ADDRESS",
    "Link",
    "LinkLimits",
    "LinkResources",
    "LinkStatus",
    "bootstrap_admin",
    "check_no_admin",
    "has_admin",
]
