"""A Flower ClientApp of the Message API that the cross-use tests drive: a deterministic
``train``, custom actions (``train.scale``, ``query``, ``query.stats``, ``query.calls``),
a count of its ``train`` calls kept in ``context.state``, and a node that raises.

It handles no ``evaluate`` message and no other ``query`` action, so those come back as
error replies.
"""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

#: A node's update: ``SHRINK * arrays + (partition-id + 1)``, weighed by partition-id + 1.
SHRINK = 0.5

app = ClientApp()


def _partition(context: Context) -> int:
    return int(context.node_config["partition-id"])


@app.train()
def train(message: Message, context: Context) -> Message:
    partition = _partition(context)
    calls = context.state["calls"]["train"] + 1 if "calls" in context.state else 1
    context.state["calls"] = MetricRecord({"train": calls})
    if partition == context.run_config.get("failing-partition"):
        raise RuntimeError(f"partition {partition} has no data")
    arrays = ArrayRecord(
        {
            name: Array(SHRINK * array.numpy() + (partition + 1))
            for name, array in message.content["arrays"].items()
        }
    )
    metrics = MetricRecord({"num-examples": partition + 1})
    return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=message)


@app.train("scale")
def scale(message: Message, context: Context) -> Message:
    factor = float(message.content["config"]["factor"])
    arrays = ArrayRecord(
        {name: Array(factor * a.numpy()) for name, a in message.content["arrays"].items()}
    )
    return Message(RecordDict({"arrays": arrays}), reply_to=message)


@app.query()
def echo(message: Message, context: Context) -> Message:
    """The message's content as it came, and the node it reached."""
    content = RecordDict(dict(message.content.items()))
    content["node"] = ConfigRecord({"partition-id": _partition(context)})
    return Message(content, reply_to=message)


@app.query("stats")
def stats(message: Message, context: Context) -> Message:
    values = np.concatenate([a.numpy().ravel() for a in message.content["arrays"].values()])
    metrics = MetricRecord({"sum": float(values.sum()), "size": int(values.size)})
    return Message(RecordDict({"stats": metrics}), reply_to=message)


@app.query("calls")
def calls(message: Message, context: Context) -> Message:
    """How many ``train`` messages this node has had, as its state counts them."""
    count = context.state["calls"]["train"] if "calls" in context.state else 0
    metrics = MetricRecord({"partition-id": _partition(context), "train": count})
    return Message(RecordDict({"calls": metrics}), reply_to=message)
