"""The dashboard's pages with a large run: how long their JSON endpoints take.

Fills a link state with ``--nodes`` nodes and one run of ``--rounds`` rounds, written
through the state's own API as a link writes it (each round: a train and an evaluate
message to every node, their replies, 1% of them errors, and the run's events), starts
an in-process link on it with the dashboard, and times each endpoint a page loads
(``--repeat`` times, over HTTP on 127.0.0.1), printing one JSON object::

    python benchmarks/dashboard.py                          # 1,000 nodes x 100 rounds
    python benchmarks/dashboard.py --nodes 100 --rounds 10  # a quick look

Figures, in seconds (median and slowest of the repeats):

- ``runs_page``: ``/api/runs`` (the runs page);
- ``run_page``: the run page's three requests one after the other: ``/api/runs/{id}``
  (summary, config, every round), ``/participation`` (the node-by-round map, aggregated
  in SQL into at most 100 bands) and ``/events`` (the last 200);
- each endpoint alone, and ``nodes_page`` (``/api/nodes``, 100 nodes) and ``federation``.

The state is kept in ``--state DIR`` (a fresh temporary directory by default; an
existing one is reused as it is, without filling it again).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from corolla.core import Error, ErrorCode, Event, Metadata
from corolla.dashboard import Dashboard
from corolla.runtime import Link
from corolla.state import RunStatus, SqliteLinkState, StoredMessage

CONTENT = "c" * 64
UPDATE = "d" * 64


def _message(run_id: int, node: int, server_round: int, kind: str) -> StoredMessage:
    metadata = Metadata(run_id, "", 0, node, "", str(server_round), kind, 3600.0)
    return StoredMessage(metadata, content_hash=CONTENT)


def _reply(message: StoredMessage, failed: bool) -> StoredMessage:
    md = message.metadata
    metadata = Metadata(
        md.run_id, "", md.dst_node_id, 0, md.message_id, md.group_id, md.message_type, md.ttl
    )
    if failed:
        error = Error(ErrorCode.CLIENT_APP_RAISED, "Traceback (most recent call last):\n...")
        return StoredMessage(metadata, error=error)
    return StoredMessage(metadata, content_hash=UPDATE)


def fill(path: Path, nodes: int, rounds: int) -> int:
    """Write the run of the module's docstring into a new state at ``path``; its id."""
    with SqliteLinkState(path, synchronous="NORMAL") as state:
        node_ids = [state.register_node(heartbeat_interval=3600.0).node_id for _ in range(nodes)]
        run_id = state.create_run(CONTENT, {"num-server-rounds": rounds, "lr": 0.1}).run_id
        state.append_event(Event("run.submit", run_id, data={"app": "bench", "by": "bench"}))
        state.update_run_status(run_id, RunStatus.STARTING)
        state.update_run_status(run_id, RunStatus.RUNNING)
        for server_round in range(1, rounds + 1):
            state.append_event(
                Event("round.start", run_id, server_round, data={"num_rounds": rounds})
            )
            summary: dict[str, Any] = {"round": server_round}
            for phase in ("train", "evaluate"):
                state.store_messages([_message(run_id, n, server_round, phase) for n in node_ids])
                sent = [
                    m
                    for fetched in state.fetch_messages_many(node_ids).values()
                    if isinstance(fetched, list)
                    for m in fetched
                ]
                failing = {node_ids[(server_round * 7 + k) % nodes] for k in range(nodes // 100)}
                state.store_replies([_reply(m, m.metadata.dst_node_id in failing) for m in sent])
                state.append_events(
                    Event(
                        "reply.error",
                        run_id,
                        server_round,
                        node_id=n,
                        data={"phase": phase, "code": 1, "reason": "ValueError"},
                    )
                    for n in sorted(failing)
                )
                summary[f"{phase}_replies"] = nodes - len(failing)
                summary[f"{phase}_failures"] = len(failing)
            summary["train"] = {"loss": 1.0 / server_round}
            summary["evaluate"] = {"accuracy": 1.0 - 1.0 / (server_round + 1)}
            state.append_event(Event("round.end", run_id, server_round, data=summary))
        state.update_run_status(run_id, RunStatus.FINISHED)
        state.append_event(Event("run.end", run_id, data={"status": "finished"}))
    return run_id


def _time(client: httpx.Client, paths: list[str], repeat: int) -> dict[str, float]:
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        for path in paths:
            answer = client.get(path)
            answer.raise_for_status()
        seconds.append(time.perf_counter() - started)
    return {"median_s": round(statistics.median(seconds), 4), "max_s": round(max(seconds), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--state", type=Path, help="link state directory to fill or reuse")
    args = parser.parse_args()
    directory = args.state or Path(tempfile.mkdtemp(prefix="corolla-dashboard-bench-"))
    database = directory / "state.db"
    fill_s = None
    if not database.exists():
        directory.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        fill(database, args.nodes, args.rounds)
        fill_s = round(time.perf_counter() - started, 1)
    with (
        Link(directory, fleet_address="127.0.0.1:0", control_address="127.0.0.1:0") as link,
        Dashboard(link, "127.0.0.1:0") as dashboard,
        httpx.Client(base_url=dashboard.url, timeout=60.0) as client,
    ):
        (run,) = client.get("/api/runs").json()["runs"]
        run_id = run["run_id"]
        pages = {
            "runs_page": ["/api/runs"],
            "run_page": [
                f"/api/runs/{run_id}",
                f"/api/runs/{run_id}/participation",
                f"/api/runs/{run_id}/events?before={2**62}&limit=200",
            ],
            "run": [f"/api/runs/{run_id}"],
            "participation": [f"/api/runs/{run_id}/participation"],
            "events": [f"/api/runs/{run_id}/events?before={2**62}&limit=200"],
            "failures_of_a_round": [f"/api/runs/{run_id}/failures?round=50"],
            "nodes_page": ["/api/nodes"],
            "federation": ["/api/federation"],
        }
        figures = {name: _time(client, paths, args.repeat) for name, paths in pages.items()}
        cells = client.get(f"/api/runs/{run_id}/participation").json()
    print(
        json.dumps(
            {
                "nodes": args.nodes,
                "rounds": args.rounds,
                "fill_s": fill_s,
                "state_mb": round(database.stat().st_size / 1e6, 1),
                "participation_bands": len(cells["bands"]),
                **figures,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
