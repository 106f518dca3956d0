"""The link's Prometheus endpoint: ``corolla link --metrics-address HOST:PORT``.

Served over HTTP (HTTPS with the link's certificate when it has one) at ``/metrics`` by
``prometheus_client``. Each scrape reads the link's state and traffic meter at that
moment:

- ``corolla_link_array_bytes_total{direction}``: array data moved (see ``_traffic``);
- ``corolla_link_array_transfer_seconds_total{direction}``: seconds at least one
  transfer that way was in flight; a rate of the first over a rate of the second is the
  link's throughput that way while it moves arrays;
- ``corolla_link_array_transfers_total{direction}``: array streams opened;
- ``corolla_link_nodes{status}``: registered nodes, online and offline;
- ``corolla_link_runs{status}``: runs by status;
- ``corolla_run_privacy_epsilon{run_id}`` and ``corolla_run_privacy_delta{run_id}``: the
  (epsilon, delta) a run with differential privacy has spent so far, from its latest
  ``privacy`` event (runs without one have no sample);
- the training metrics of each run, labelled ``run_id`` and ``app`` (see ``_run_metrics``):
  ``corolla_run_rounds``, ``corolla_run_round_seconds``,
  ``corolla_run_metric{phase, name}``, ``corolla_run_replies_total{phase}``,
  ``corolla_run_failures_total{phase}``, ``corolla_run_last_round_replies{phase}`` and
  ``corolla_run_last_round_failures{phase}``.

The per-run metrics cover the runs still going and the last ``ENDED_RUNS_KEPT`` (10) that
ended; each scrape reads only the events stored since the one before.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from corolla.state import RunStatus
from corolla.transport import CertificateFiles

from .._prometheus import MetricsEndpoint, split_http_address
from ._records import app_name
from ._resources import LinkResources
from ._run_metrics import RunTallies, followed_runs

__all__ = ["LinkCollector", "MetricsServer", "split_http_address"]

_log = logging.getLogger("corolla.link")


#: The kind of the events that say what privacy a run spent (see ``corolla.privacy``).
PRIVACY_EVENT = "privacy"


@dataclasses.dataclass
class _Spent:
    """The latest privacy event read of one run."""

    seq: int = 0
    epsilon: float | None = None
    delta: float | None = None


class LinkCollector(Collector):
    """The metrics of the module docstring, read from ``shared`` at each scrape."""

    def __init__(self, shared: LinkResources) -> None:
        self._shared = shared
        # Each scrape reads only the privacy events stored since the one before.
        self._spent: dict[int, _Spent] = {}
        self._lock = threading.Lock()
        self._tallies = RunTallies(shared.state)

    def collect(self) -> Iterator[Metric]:
        moved = CounterMetricFamily(
            "corolla_link_array_bytes",
            "Bytes of array data the link moved, by direction",
            labels=["direction"],
        )
        busy = CounterMetricFamily(
            "corolla_link_array_transfer_seconds",
            "Seconds during which at least one array transfer was in flight, by direction",
            labels=["direction"],
        )
        transfers = CounterMetricFamily(
            "corolla_link_array_transfers",
            "Array transfers (streams) begun, by direction",
            labels=["direction"],
        )
        for traffic in self._shared.traffic.totals():
            moved.add_metric([traffic.direction], traffic.bytes)
            busy.add_metric([traffic.direction], traffic.busy_s)
            transfers.add_metric([traffic.direction], traffic.transfers)
        yield from (moved, busy, transfers)
        state = self._shared.state
        nodes = state.list_nodes()
        online = sum(1 for node in nodes if node.online)
        gauge = GaugeMetricFamily(
            "corolla_link_nodes", "Nodes registered with the link, by status", labels=["status"]
        )
        gauge.add_metric(["online"], online)
        gauge.add_metric(["offline"], len(nodes) - online)
        yield gauge
        runs = state.list_runs()
        statuses = collections.Counter(run.status for run in runs)
        gauge = GaugeMetricFamily("corolla_link_runs", "Runs, by status", labels=["status"])
        for run_status in RunStatus:
            gauge.add_metric([run_status.value], statuses[run_status])
        yield gauge
        followed = followed_runs(runs)
        yield from self._privacy([run.run_id for run in followed])
        apps_dir = self._shared.apps_dir
        apps = {run.run_id: app_name(apps_dir / run.bundle_hash) for run in followed}
        yield from self._tallies.collect(followed, apps)

    def _privacy(self, run_ids: list[int]) -> Iterator[Metric]:
        epsilon = GaugeMetricFamily(
            "corolla_run_privacy_epsilon",
            "The epsilon of differential privacy a run has spent so far",
            labels=["run_id"],
        )
        delta = GaugeMetricFamily(
            "corolla_run_privacy_delta",
            "The delta at which a run's epsilon of differential privacy is reported",
            labels=["run_id"],
        )
        state = self._shared.state
        with self._lock:
            for forgotten in set(self._spent) - set(run_ids):
                del self._spent[forgotten]
            for run_id in run_ids:
                spent = self._spent.setdefault(run_id, _Spent())
                for entry in state.read_events(run_id, after=spent.seq, kind=PRIVACY_EVENT):
                    spent.seq = entry.seq
                    data = entry.event.data
                    if isinstance(data.get("epsilon"), int | float):
                        spent.epsilon = float(data["epsilon"])
                        spent.delta = float(data.get("delta") or 0.0)
                if spent.epsilon is not None:
                    epsilon.add_metric([str(run_id)], spent.epsilon)
                    delta.add_metric([str(run_id)], spent.delta or 0.0)
        yield from (epsilon, delta)


class MetricsServer:
    """``/metrics`` of ``shared`` served on ``address`` from a thread, until :meth:`stop`.

    With ``certificates``, over HTTPS with the link's certificate and key.

    Raises
    ------
    ConfigError
        If ``address`` is malformed or cannot be bound.
    """

    def __init__(
        self, shared: LinkResources, address: str, certificates: CertificateFiles | None
    ) -> None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(LinkCollector(shared))
        certfile = keyfile = None
        if certificates is not None:
            certfile, keyfile = str(certificates.link_certificate), str(certificates.link_key)
        self._endpoint = MetricsEndpoint(
            registry, address, certfile=certfile, keyfile=keyfile, logger=_log
        )

    @property
    def url(self) -> str:
        """Where the metrics are read, with the port actually bound."""
        return self._endpoint.url

    def stop(self) -> None:
        """Stop serving and close the socket; idempotent."""
        self._endpoint.stop()
