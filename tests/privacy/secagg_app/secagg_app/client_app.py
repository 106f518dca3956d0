"""What each node does: a seeded local update, sent masked through SecAgg+."""

from __future__ import annotations

import numpy as np

from corolla.client import ClientApp
from corolla.core import ArrayRecord, Context, Message, MetricRecord, RecordDict
from corolla.privacy import secaggplus_mod

app = ClientApp(mods=[secaggplus_mod])


@app.train()
def train(message: Message, context: Context) -> Message:
    partition = int(context.node_config["partition-id"])
    server_round = int(message.content["config"]["server-round"])
    rng = np.random.default_rng([partition, server_round])
    arrays = ArrayRecord(
        (k, (v + rng.uniform(-0.4, 0.4, v.shape)).astype(v.dtype))
        for k, v in message.content["arrays"].items()
    )
    metrics = MetricRecord({"num-examples": partition + 1, "loss": float(partition)})
    return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=message)
