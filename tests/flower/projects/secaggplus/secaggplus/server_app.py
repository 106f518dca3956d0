"""secaggplus: DefaultWorkflow with SecAgg+ as its fit workflow, over a legacy FedAvg."""

import numpy as np
from flwr.common import Context, ndarrays_to_parameters
from flwr.server import Grid, LegacyContext, ServerApp, ServerConfig
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow

from secaggplus.task import initial_model

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    config = context.run_config
    strategy = FedAvg(
        fraction_fit=1.0,
        fraction_evaluate=0.0,
        min_fit_clients=3,
        min_available_clients=3,
        initial_parameters=ndarrays_to_parameters(initial_model()),
    )
    context = LegacyContext(
        context=context,
        config=ServerConfig(num_rounds=int(config["num-server-rounds"])),
        strategy=strategy,
    )
    fit_workflow = SecAggPlusWorkflow(
        num_shares=int(config["num-shares"]),
        reconstruction_threshold=int(config["reconstruction-threshold"]),
        max_weight=float(config["max-weight"]),
        clipping_range=float(config["clipping-range"]),
        quantization_range=int(config["quantization-range"]),
    )
    workflow = DefaultWorkflow(fit_workflow=fit_workflow)
    workflow(grid, context)

    arrays = context.state.array_records["parameters"].to_numpy_ndarrays()
    np.savez("final_model.npz", **{f"layer{i}": a for i, a in enumerate(arrays)})
