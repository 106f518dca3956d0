"""The apps ``benchmarks/privacy.py`` runs: FedAvg over a constant-step "training", plain,
under SecAgg+, or under central differential privacy.

They live in an importable module so that worker processes load them by reference.
Everything a run needs comes from the run config:

- ``params``: float32 parameters of the model (one flat array);
- ``rounds``: rounds of FedAvg, every node sampled;
- ``step``: what local training adds to every parameter;
- ``seed``: seed of the initial model and of the strategy;
- ``mechanism``: ``plain``, ``secagg-dp`` (SecAgg+ around client-clipped central DP, the
  nodes adding the noise), ``secagg`` (:class:`~corolla.privacy.SecAggPlus` around
  FedAvg, its default graph and threshold) or ``dp`` (central DP with server-side
  clipping around FedAvg);
- ``clipping``: the SecAgg+ clipping range, or the DP clipping norm.

``client`` is the plain ClientApp (``_sim_apps``' training: weights 1 to 7 by partition);
``secagg_client`` the same with :func:`~corolla.privacy.secaggplus_mod`, as a user of
SecAgg+ writes it.
"""

from __future__ import annotations

import _sim_apps
import numpy as np

from corolla.client import ClientApp
from corolla.core import ArrayRecord, Context
from corolla.privacy import SecAggPlus, secaggplus_mod
from corolla.server import Grid, ServerApp
from corolla.strategy import FedAvg, Strategy

__all__ = ["client", "initial_model", "secagg_client", "server"]

ARRAY_NAME = "w"


def initial_model(params: int, seed: int) -> np.ndarray:
    """The initial float32 model, uniform in [-1, 1)."""
    return np.random.default_rng(seed).uniform(-1, 1, params).astype(np.float32)


client = ClientApp()
client.train()(_sim_apps.train)

secagg_client = ClientApp(mods=[secaggplus_mod])
secagg_client.train()(_sim_apps.train)

server = ServerApp()


def strategy_for(config: dict[str, object]) -> Strategy:
    """The strategy of the run config's ``mechanism``."""
    fedavg = FedAvg(
        fraction_evaluate=0.0, min_train_nodes=2, min_available_nodes=2, seed=int(config["seed"])
    )
    mechanism = str(config["mechanism"])
    clipping = float(config["clipping"])  # type: ignore[arg-type]
    if mechanism == "plain":
        return fedavg
    if mechanism == "secagg":
        return SecAggPlus(fedavg, clipping_range=clipping, max_weight=8, seed=int(config["seed"]))
    if mechanism == "dp":
        from corolla.privacy import CentralDP

        return CentralDP(
            fedavg, noise_multiplier=1.0, clipping_norm=clipping, clipping="server", delta=1e-5
        )
    if mechanism == "secagg-dp":
        from corolla.privacy import CentralDP

        private = CentralDP(
            fedavg, noise_multiplier=1.0, clipping_norm=clipping, clipping="client", delta=1e-5
        )
        # Each element is at most C plus a node's noise share (at most 1 / sqrt(2) of z C):
        # five shares above C leave the range uncut but for one element in millions.
        return SecAggPlus(private, clipping_range=clipping * 4.6, seed=int(config["seed"]))
    raise ValueError(f"unknown mechanism {mechanism!r}")


@server.main()
def main(grid: Grid, context: Context) -> None:
    config = dict(context.run_config)
    initial = ArrayRecord({ARRAY_NAME: initial_model(int(config["params"]), int(config["seed"]))})
    strategy_for(config).start(grid, initial, num_rounds=int(config["rounds"]))
