"""ClientApps and ServerApps used by the simulation tests (importable by worker processes)."""

from __future__ import annotations

import os
import time

import numpy as np

from corolla.client import ClientApp
from corolla.core import ArrayRecord, Context, Message, MetricRecord, RecordDict
from corolla.server import Grid, ServerApp
from corolla.strategy import AttributeSelection, FedAvg

# A noisy local update: random but seeded by (seed, node, round), as a real app would be.
noisy = ClientApp()


@noisy.train()
def noisy_train(message: Message, context: Context) -> Message:
    server_round = int(message.content["config"]["server-round"])
    seed = int(context.run_config.get("seed", 0))
    rng = np.random.default_rng([seed, context.node_id, server_round])
    arrays = ArrayRecord(
        {
            name: (a + rng.standard_normal(a.shape).astype(a.dtype) * np.float32(0.1))
            for name, a in message.content["arrays"].items()
        }
    )
    calls = int(context.state["calls"]["n"]) + 1 if "calls" in context.state else 1
    context.state = context.state | {"calls": MetricRecord({"n": calls})}
    examples = int(rng.integers(1, 100))
    metrics = MetricRecord({"num-examples": examples, "train-loss": float(rng.random())})
    return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=message)


@noisy.evaluate()
def noisy_evaluate(message: Message, context: Context) -> Message:
    metrics = MetricRecord({"num-examples": context.node_id, "accuracy": context.node_id / 100})
    return Message(RecordDict({"metrics": metrics}), reply_to=message)


def initial_arrays() -> ArrayRecord:
    return ArrayRecord(
        {
            "w": np.linspace(-1, 1, 3000, dtype=np.float32).reshape(30, 100),
            "b": np.zeros(7, dtype=np.float64),
        }
    )


def fedavg_main(grid: Grid, context: Context) -> None:
    FedAvg(
        fraction_train=float(context.run_config.get("fraction-train", 1.0)),
        fraction_evaluate=0.5,
        seed=int(context.run_config.get("seed", 0)),
    ).start(grid, initial_arrays(), num_rounds=int(context.run_config.get("num-rounds", 3)))


fedavg_server = ServerApp(fedavg_main)

# Faulty behaviours, chosen per node through the run config.
faulty = ClientApp()


@faulty.train()
def faulty_train(message: Message, context: Context) -> Message:
    node = context.node_id
    if node == int(context.run_config.get("raise-on", -1)):
        raise ValueError(f"node {node} cannot train")
    if node == int(context.run_config.get("exit-on", -1)):
        os._exit(3)
    if node == int(context.run_config.get("sleep-on", -1)):
        time.sleep(60)
    if node == int(context.run_config.get("bad-shape-on", -1)):
        arrays = ArrayRecord({"w": np.zeros(3, np.float32), "b": np.zeros(7)})
    elif node == int(context.run_config.get("nan-on", -1)):
        arrays = ArrayRecord(
            {
                name: np.full(a.shape, np.nan, a.dtype)
                for name, a in message.content["arrays"].items()
            }
        )
    else:
        arrays = ArrayRecord(
            {name: a + a.dtype.type(1) for name, a in message.content["arrays"].items()}
        )
    metrics = MetricRecord({"num-examples": 1})
    return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=message)


def faulty_main(grid: Grid, context: Context) -> None:
    FedAvg(fraction_evaluate=0.0, seed=0).start(
        grid, initial_arrays(), num_rounds=2, timeout=float(context.run_config.get("timeout", 60))
    )


faulty_server = ServerApp(faulty_main)


def tagged_main(grid: Grid, context: Context) -> None:
    """One round over the nodes tagged "gpu" (see ``SimulationGrid``'s node attributes)."""
    selection = AttributeSelection(grid.node_attributes, tags={"gpu"})
    FedAvg(
        fraction_evaluate=0.0, min_train_nodes=1, min_available_nodes=1, selection=selection
    ).start(grid, initial_arrays(), num_rounds=1)


tagged_server = ServerApp(tagged_main)


# Replies with the node config it was given, as Flower apps read their partition.
partition_echo = ClientApp()


@partition_echo.query()
def partition_echo_query(message: Message, context: Context) -> Message:
    partition = MetricRecord(
        {key: int(context.node_config[key]) for key in ("partition-id", "num-partitions")}
    )
    return Message(RecordDict({"partition": partition}), reply_to=message)
