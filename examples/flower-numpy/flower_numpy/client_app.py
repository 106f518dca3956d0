"""flower-numpy: a Flower ClientApp."""

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from flower_numpy.task import load_data, loss, train

app = ClientApp()


def _data(context: Context):
    return load_data(
        int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])
    )


@app.train()
def local_train(msg: Message, context: Context) -> Message:
    x, y = _data(context)
    model = msg.content["arrays"].to_numpy_ndarrays()
    model = dict(zip(["weights", "bias"], model))
    steps = int(context.run_config["local-steps"])
    lr = float(msg.content["config"]["lr"])
    trained = train(model, x, y, steps, lr)
    metrics = MetricRecord({"train_loss": loss(trained, x, y), "num-examples": len(y)})
    arrays = ArrayRecord([trained["weights"], trained["bias"]])
    content = RecordDict({"arrays": arrays, "metrics": metrics})
    return Message(content=content, reply_to=msg)


@app.evaluate()
def local_evaluate(msg: Message, context: Context) -> Message:
    x, y = _data(context)
    model = dict(zip(["weights", "bias"], msg.content["arrays"].to_numpy_ndarrays()))
    metrics = MetricRecord({"eval_loss": loss(model, x, y), "num-examples": len(y)})
    return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)
