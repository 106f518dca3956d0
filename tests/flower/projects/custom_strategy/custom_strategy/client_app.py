"""custom-strategy: each node pulls the model toward its own target."""

import numpy as np
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

app = ClientApp()


def target(context: Context) -> np.ndarray:
    rng = np.random.default_rng(100 + int(context.node_config["partition-id"]))
    return rng.normal(size=(3, 2)).astype(np.float32)


@app.train()
def train(msg: Message, context: Context) -> Message:
    (model,) = msg.content["arrays"].to_numpy_ndarrays()
    goal = target(context)
    updated = model + 0.8 * (goal - model)
    metrics = MetricRecord(
        {
            "distance": float(np.linalg.norm(goal - updated)),
            "num-examples": 10 + int(context.node_config["partition-id"]),
        }
    )
    return Message(RecordDict({"arrays": ArrayRecord([updated]), "metrics": metrics}), reply_to=msg)
