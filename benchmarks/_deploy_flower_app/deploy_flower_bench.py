"""The app ``benchmarks/deploy_flower.py`` submits to Flower's SuperLink.

The same workload as ``benchmarks/_deploy_app``, written against Flower's message API:
FedAvg (``flwr.serverapp.strategy.FedAvg``) over a "training" that adds ``step`` to every
parameter, every node in every round, weight 1, so the final model is exactly
``initial + rounds * step``. Everything comes from the run config (``pyproject.toml``).

The ServerApp measures each round from the strategy's ``configure_train`` to the end of its
``aggregate_train`` (Flower logs no per-round time, only the strategy's total), stamps
``time.time()`` into each round's train config as ``sent-at`` just before the messages are
built, and collects the ``delivery-s`` each ClientApp reports: seconds from that stamp to
its own call, on the same machine's clock. (The SuperLink's ``delivered_at`` does not reach
the ClientApp: ``Message`` resets it.)
It writes its figures as JSON to ``out/report.json`` (``out`` from the run config), and
with ``save-final`` the final model to ``out/final.npy``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

__all__ = ["ARRAY_NAME", "client", "initial_model", "server"]

ARRAY_NAME = "w"


def initial_model(params: int, seed: int) -> np.ndarray:
    """The initial float32 model: multiples of 1/64 in [-16, 16), so ``+ step`` is exact.

    The same values as ``benchmarks/_deploy_app/deploy_bench.py`` for the same seed.
    """
    rng = np.random.default_rng(seed)
    return (rng.integers(-1024, 1024, size=params) / 64.0).astype(np.float32)


client = ClientApp()


@client.train()
def train(message: Message, context: Context) -> Message:
    called = time.time()
    sent_at = float(message.content["config"]["sent-at"])  # type: ignore[arg-type]
    step = np.float32(context.run_config["step"])
    arrays = message.content["arrays"]
    assert isinstance(arrays, ArrayRecord)
    updated = ArrayRecord({name: Array(a.numpy() + step) for name, a in arrays.items()})
    metrics = MetricRecord({"num-examples": 1, "delivery-s": called - sent_at})
    return Message(RecordDict({"arrays": updated, "metrics": metrics}), reply_to=message)


class TimedFedAvg(FedAvg):
    """FedAvg that records when each round starts and ends and what its replies said."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.round_start: dict[int, float] = {}
        self.round_end: dict[int, float] = {}
        self.replies: dict[int, int] = {}
        self.errors: dict[int, int] = {}
        self.delivery_s: list[float] = []

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self.round_start[server_round] = time.time()
        config["sent-at"] = time.time()
        return list(super().configure_train(server_round, arrays, config, grid))

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        ok = [r for r in replies if not r.has_error()]
        self.replies[server_round] = len(ok)
        self.errors[server_round] = len(replies) - len(ok)
        for reply in ok:
            metrics = reply.content["metrics"]
            self.delivery_s.append(float(metrics["delivery-s"]))  # type: ignore[arg-type, index]
        result = super().aggregate_train(server_round, replies)
        self.round_end[server_round] = time.time()
        return result


server = ServerApp()


@server.main()
def main(grid: Grid, context: Context) -> None:
    config = context.run_config
    nodes = int(config["nodes"])  # type: ignore[arg-type]
    out = Path(str(config["out"]))
    started = time.time()
    deadline = started + float(config["connect-timeout"])  # type: ignore[arg-type]
    while len(list(grid.get_node_ids())) < nodes and time.time() < deadline:
        time.sleep(0.2)
    connected = len(list(grid.get_node_ids()))
    report: dict[str, Any] = {"nodes_connected": connected, "wait_nodes_s": time.time() - started}
    if connected >= nodes:
        params, seed = int(config["params"]), int(config["seed"])  # type: ignore[arg-type]
        initial = ArrayRecord({ARRAY_NAME: Array(initial_model(params, seed))})
        strategy = TimedFedAvg(
            fraction_train=1.0,
            fraction_evaluate=0.0,
            min_train_nodes=nodes,
            min_available_nodes=nodes,
        )
        begun = time.time()
        result = strategy.start(
            grid,
            initial,
            num_rounds=int(config["rounds"]),  # type: ignore[arg-type]
            timeout=float(config["round-timeout"]),  # type: ignore[arg-type]
        )
        report.update(
            strategy_s=time.time() - begun,
            round_start=strategy.round_start,
            round_end=strategy.round_end,
            replies=strategy.replies,
            errors=strategy.errors,
            delivery_s=strategy.delivery_s,
        )
        if config["save-final"]:
            np.save(out / "final.npy", result.arrays[ARRAY_NAME].numpy())
    (out / "report.json").write_text(json.dumps(report))
