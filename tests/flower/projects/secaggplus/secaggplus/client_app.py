"""secaggplus: a NumPyClient whose fit replies Flower's secaggplus_mod masks."""

from flwr.client import ClientApp, NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.common import Context

from secaggplus.task import num_examples, update


class StepClient(NumPyClient):
    def __init__(self, partition_id: int) -> None:
        self.partition_id = partition_id

    def fit(self, parameters, config):
        return update(parameters, self.partition_id), num_examples(self.partition_id), {}


def client_fn(context: Context):
    return StepClient(int(context.node_config["partition-id"])).to_client()


app = ClientApp(client_fn=client_fn, mods=[secaggplus_mod])
