"""Per-run training metrics for the link's Prometheus endpoint, read from the runs' events.

A run's ServerApp emits a ``round.end`` event at the end of each round (see
``corolla.strategy``), carrying the round's summary: its train, evaluate and server
metrics, the replies and failures of each phase, its seconds. The link stores it with
the run's other events; :class:`RunTallies` reads, at each scrape, only the ``round.end``
events stored since the scrape before, and keeps per run:

- the last value of each numeric metric, by phase and name;
- the last round ended, the replies and failures of that round, and their totals.

Only the runs still going and the :data:`ENDED_RUNS_KEPT` that ended last are followed:
what a scrape reads and exports stays bounded whatever the number of runs the link has
served (a run's history stays readable with ``corolla log`` and the Control API).
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from corolla.state import LinkState, RunInfo

__all__ = ["ENDED_RUNS_KEPT", "RunTallies", "followed_runs"]

#: Ended runs (finished, failed, stopped) whose metrics stay exported, the latest first.
ENDED_RUNS_KEPT = 10
#: The kind of the event that ends a round (see ``corolla.strategy.Strategy.start``).
ROUND_END = "round.end"
#: Events read per query: a scrape after a long pause reads them a page at a time.
_PAGE = 500
#: The phases of a round that have replies, and those that have metrics.
_REPLY_PHASES = ("train", "evaluate")
_METRIC_PHASES = ("train", "evaluate", "server")


def followed_runs(runs: Iterable[RunInfo], ended_kept: int = ENDED_RUNS_KEPT) -> list[RunInfo]:
    """The runs not ended, then the ``ended_kept`` that ended last, by run id."""
    runs = list(runs)
    ended = [run for run in runs if run.status.ended]
    ended.sort(key=lambda run: (run.ended_at or run.updated_at, run.run_id), reverse=True)
    kept = [run for run in runs if not run.status.ended] + ended[:ended_kept]
    return sorted(kept, key=lambda run: run.run_id)


@dataclasses.dataclass
class _Tally:
    """What the ``round.end`` events read of one run add up to."""

    seq: int = 0
    rounds: int = 0
    seconds: float = 0.0
    metrics: dict[tuple[str, str], float] = dataclasses.field(default_factory=dict)
    last: dict[str, tuple[int, int]] = dataclasses.field(default_factory=dict)
    totals: dict[str, list[int]] = dataclasses.field(default_factory=dict)

    def add(self, server_round: int, summary: Mapping[str, Any]) -> None:
        for phase in _METRIC_PHASES:
            metrics = summary.get(phase)
            if isinstance(metrics, Mapping):
                for name, value in metrics.items():
                    if isinstance(value, int | float) and not isinstance(value, bool):
                        self.metrics[(phase, str(name))] = float(value)
        if server_round < 1:  # the server's evaluation of the initial arrays
            return
        repeated = server_round <= self.rounds  # a restarted ServerApp redoing a round
        self.rounds = max(self.rounds, server_round)
        self.seconds = _number(summary.get("seconds"))
        for phase in _REPLY_PHASES:
            replies = int(_number(summary.get(f"{phase}_replies")))
            failures = int(_number(summary.get(f"{phase}_failures")))
            self.last[phase] = (replies, failures)
            if not repeated:
                total = self.totals.setdefault(phase, [0, 0])
                total[0] += replies
                total[1] += failures


def _number(value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return 0.0


class RunTallies:
    """The per-run metrics of the module docstring; :meth:`collect` is thread-safe."""

    def __init__(self, state: LinkState) -> None:
        self._state = state
        self._tallies: dict[int, _Tally] = {}
        self._lock = threading.Lock()

    def collect(self, runs: list[RunInfo], apps: Mapping[int, str]) -> Iterator[Metric]:
        """The metrics of ``runs`` (see :func:`followed_runs`), each labelled with its id
        and its app's name from ``apps``."""
        labels = ["run_id", "app"]
        rounds = GaugeMetricFamily(
            "corolla_run_rounds", "The last round a run ended", labels=labels
        )
        seconds = GaugeMetricFamily(
            "corolla_run_round_seconds", "Seconds the last round of a run took", labels=labels
        )
        metric = GaugeMetricFamily(
            "corolla_run_metric",
            "The last value of each metric of a run, by phase (train, evaluate, server)",
            labels=[*labels, "phase", "name"],
        )
        replies = CounterMetricFamily(
            "corolla_run_replies",
            "Replies a run's rounds aggregated, by phase",
            labels=[*labels, "phase"],
        )
        failures = CounterMetricFamily(
            "corolla_run_failures",
            "Replies a run's rounds lost (an error, or none in time), by phase",
            labels=[*labels, "phase"],
        )
        last_replies = GaugeMetricFamily(
            "corolla_run_last_round_replies",
            "Replies the last round of a run aggregated, by phase",
            labels=[*labels, "phase"],
        )
        last_failures = GaugeMetricFamily(
            "corolla_run_last_round_failures",
            "Replies the last round of a run lost, by phase",
            labels=[*labels, "phase"],
        )
        with self._lock:
            followed = {run.run_id for run in runs}
            for run_id in [r for r in self._tallies if r not in followed]:
                del self._tallies[run_id]
            for run in runs:
                tally = self._read(run.run_id)
                key = [str(run.run_id), apps.get(run.run_id, "")]
                rounds.add_metric(key, tally.rounds)
                if tally.rounds:
                    seconds.add_metric(key, tally.seconds)
                for (phase, name), value in sorted(tally.metrics.items()):
                    metric.add_metric([*key, phase, name], value)
                for phase, (ok, failed) in tally.last.items():
                    last_replies.add_metric([*key, phase], ok)
                    last_failures.add_metric([*key, phase], failed)
                for phase, (ok, failed) in tally.totals.items():
                    replies.add_metric([*key, phase], ok)
                    failures.add_metric([*key, phase], failed)
        yield from (rounds, seconds, metric, replies, failures, last_replies, last_failures)

    def _read(self, run_id: int) -> _Tally:
        """The run's tally, with the ``round.end`` events stored since the last read."""
        tally = self._tallies.setdefault(run_id, _Tally())
        while True:
            entries = self._state.read_events(run_id, after=tally.seq, kind=ROUND_END, limit=_PAGE)
            for entry in entries:
                tally.seq = entry.seq
                if entry.event.round is not None:
                    tally.add(entry.event.round, entry.event.data)
            if len(entries) < _PAGE:
                return tally
