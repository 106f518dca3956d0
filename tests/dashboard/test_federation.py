"""FederationSamples keeps the last samples of the link's traffic and nodes."""

from __future__ import annotations

import dataclasses

from corolla.dashboard._federation import FederationSamples


@dataclasses.dataclass(frozen=True)
class Count:
    direction: str
    bytes: int
    busy_s: float


def test_samples_keep_the_latest_traffic_and_nodes_oldest_first():
    moved = [0]
    now = [100.0]

    def traffic() -> list[Count]:
        return [Count("to_nodes", moved[0], 0.5), Count("from_nodes", 2 * moved[0], 0.25)]

    samples = FederationSamples(traffic, lambda: (3, 4), keep=2, clock=lambda: now[0])
    for step in range(3):
        moved[0], now[0] = 10 * step, 100.0 + step
        samples.take()

    kept = samples.samples()
    assert [s["time"] for s in kept] == [101.0, 102.0]
    assert kept[-1] == {
        "time": 102.0,
        "nodes_online": 3,
        "nodes": 4,
        "bytes": {"to_nodes": 20, "from_nodes": 40},
        "busy_s": {"to_nodes": 0.5, "from_nodes": 0.25},
    }
