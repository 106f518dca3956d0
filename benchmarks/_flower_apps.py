"""The simulation-overhead workloads as Flower apps (Message API), for ``compare_flower``.

The same work as ``_sim_apps``: FedAvg over a "training" that adds ``STEP`` to every
parameter, with integer weights, evaluation off. Flower's ``run_simulation`` takes no run
config, so the ServerApp reads the workload from ``FLOWER_BENCH_CONFIG`` (JSON) in the
environment; it runs in a thread of the calling process, so it reports round timings and
the final arrays through :data:`RECORD`. ClientApps run in Ray's worker processes; each
reply says when its call ran (wall clock), so the ServerApp can tell when the first call
of the run happened. Importing this module needs ``flwr``.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import numpy as np
from _sim_apps import initial_model
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

CONFIG_VARIABLE = "FLOWER_BENCH_CONFIG"
STEP = np.float32(0.5)

#: What the ServerApp saw: round start and end times (perf_counter), the wall-clock time
#: of the first ClientApp call, and the final arrays.
RECORD: dict[str, Any] = {"round_start": {}, "round_end": {}, "first_call": None, "arrays": None}

client = ClientApp()


@client.train()
def train(message: Message, context: Context) -> Message:
    arrays = message.content["arrays"].to_numpy_ndarrays()
    updated = ArrayRecord([a + STEP for a in arrays])
    weight = int(context.node_config["partition-id"]) % 7 + 1
    metrics = MetricRecord({"num-examples": weight, "called-at": time.time()})
    return Message(RecordDict({"arrays": updated, "metrics": metrics}), reply_to=message)


class TimedFedAvg(FedAvg):
    """FedAvg that records when each round's training starts and ends."""

    def configure_train(self, server_round: int, *args: Any, **kwargs: Any) -> Any:
        RECORD["round_start"][server_round] = time.perf_counter()
        return super().configure_train(server_round, *args, **kwargs)

    def aggregate_train(self, server_round: int, replies: Any, *args: Any, **kwargs: Any) -> Any:
        replies = list(replies)
        called = [r.content["metrics"]["called-at"] for r in replies if r.has_content()]
        if called and RECORD["first_call"] is None:
            RECORD["first_call"] = min(called)
        result = super().aggregate_train(server_round, replies, *args, **kwargs)
        RECORD["round_end"][server_round] = time.perf_counter()
        return result


server = ServerApp()


@server.main()
def main(grid: Grid, context: Context) -> None:
    config = json.loads(os.environ[CONFIG_VARIABLE])
    initial = ArrayRecord([initial_model(int(config["params"]), int(config["seed"]))])
    strategy = TimedFedAvg(
        fraction_train=float(config["fraction"]),
        fraction_evaluate=0.0,
        min_train_nodes=1,
        min_evaluate_nodes=0,
        min_available_nodes=1,
    )
    result = strategy.start(grid, initial, num_rounds=int(config["rounds"]))
    RECORD["arrays"] = result.arrays.to_numpy_ndarrays()
