"""Flower's own SecAgg+ on the workload of ``_privacy_apps``, for ``benchmarks/privacy.py``.

A ``NumPyClient`` whose ``fit`` adds ``step`` to every parameter, behind Flower's
``secaggplus_mod``; a ServerApp running Flower's ``DefaultWorkflow`` with its
``SecAggPlusWorkflow`` as the fit workflow, over a legacy ``FedAvg`` that records when
each round's training starts (``configure_fit``) and ends (``aggregate_fit``, after the
unmasking). Flower's ``run_simulation`` takes no run config, so the ServerApp reads the
workload from ``FLOWER_PRIVACY_CONFIG`` (JSON) in the environment. Importing this module
needs ``flwr``.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import numpy as np
from _privacy_apps import initial_model
from flwr.client import ClientApp, NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.common import Context, ndarrays_to_parameters
from flwr.server import Grid, LegacyContext, ServerApp, ServerConfig
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow

CONFIG_VARIABLE = "FLOWER_PRIVACY_CONFIG"

#: Round start and end times (perf_counter), by round.
RECORD: dict[str, Any] = {"round_start": {}, "round_end": {}}


def _config() -> dict[str, Any]:
    return json.loads(os.environ[CONFIG_VARIABLE])


class StepClient(NumPyClient):
    def __init__(self, partition_id: int) -> None:
        self.partition_id = partition_id

    def fit(self, parameters: Any, config: Any) -> Any:
        step = np.float32(_config()["step"])
        return [p + step for p in parameters], self.partition_id % 7 + 1, {}


def client_fn(context: Context) -> Any:
    return StepClient(int(context.node_config["partition-id"])).to_client()


client = ClientApp(client_fn=client_fn, mods=[secaggplus_mod])


class TimedFedAvg(FedAvg):
    """Legacy FedAvg recording when each round's training starts and ends."""

    def configure_fit(self, server_round: int, *args: Any, **kwargs: Any) -> Any:
        RECORD["round_start"][server_round] = time.perf_counter()
        return super().configure_fit(server_round, *args, **kwargs)

    def aggregate_fit(self, server_round: int, *args: Any, **kwargs: Any) -> Any:
        result = super().aggregate_fit(server_round, *args, **kwargs)
        RECORD["round_end"][server_round] = time.perf_counter()
        return result


server = ServerApp()


@server.main()
def main(grid: Grid, context: Context) -> None:
    config = _config()
    nodes = int(config["nodes"])
    strategy = TimedFedAvg(
        fraction_fit=1.0,
        fraction_evaluate=0.0,
        min_fit_clients=nodes,
        min_available_clients=nodes,
        initial_parameters=ndarrays_to_parameters(
            [initial_model(int(config["params"]), int(config["seed"]))]
        ),
    )
    legacy = LegacyContext(
        context=context, config=ServerConfig(num_rounds=int(config["rounds"])), strategy=strategy
    )
    fit_workflow = SecAggPlusWorkflow(
        num_shares=int(config["num_shares"]),
        reconstruction_threshold=int(config["threshold"]),
        clipping_range=float(config["clipping"]),
        max_weight=8.0,
    )
    DefaultWorkflow(fit_workflow=fit_workflow)(grid, legacy)
