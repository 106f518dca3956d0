"""A Flower ServerApp and ClientApp as Corolla apps: the run's result counts, for each
round, the nodes that answered and those that failed, however many messages the round
sent each node."""

from __future__ import annotations

import numpy as np
from flwr.client import ClientApp, NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.common import Context, ndarrays_to_parameters
from flwr.server import Grid, LegacyContext, ServerApp, ServerConfig
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow

from corolla.flower import client_app_adapter, server_app_adapter
from corolla.simulation import run_simulation

NODES = 3
ROUNDS = 2


class Client(NumPyClient):
    def __init__(self, partition_id: int) -> None:
        self.partition_id = partition_id

    def fit(self, parameters, config):
        if self.partition_id == NODES - 1:
            raise RuntimeError("this node drops out while training")
        return [p + 1.0 for p in parameters], 10, {}


def _client_fn(context: Context):
    return Client(int(context.node_config["partition-id"])).to_client()


def _secaggplus_server_app() -> ServerApp:
    """Each round asks every node four times, once per stage of SecAgg+."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = FedAvg(
            fraction_fit=1.0,
            fraction_evaluate=0.0,
            min_fit_clients=NODES,
            min_available_clients=NODES,
            accept_failures=True,
            initial_parameters=ndarrays_to_parameters([np.zeros(2)]),
        )
        legacy = LegacyContext(context, ServerConfig(num_rounds=ROUNDS), strategy)
        fit = SecAggPlusWorkflow(num_shares=NODES, reconstruction_threshold=2)
        DefaultWorkflow(fit_workflow=fit)(grid, legacy)

    return app


def test_a_round_counts_each_node_once_however_many_messages_it_answered():
    # Arrange: SecAgg+ asks each node at 4 stages; the last node fails the third (training)
    server = server_app_adapter(_secaggplus_server_app())
    client = client_app_adapter(ClientApp(client_fn=_client_fn, mods=[secaggplus_mod]))

    # Act
    result = run_simulation(server, client, NODES, backend="inline")

    # Assert: per round, two nodes answered and one failed, after answering two stages
    assert result.history is not None
    counts = [(s.round, s.train_replies, s.train_failures) for s in result.history.rounds]
    assert counts == [(r, NODES - 1, 1) for r in range(1, ROUNDS + 1)]
    assert result.arrays is not None
    np.testing.assert_allclose(result.arrays["0"], np.full(2, float(ROUNDS)), atol=1e-3)
