"""sklearn-wine: a NumPyClient training a scikit-learn SGDClassifier."""

from flwr.client import ClientApp, NumPyClient
from flwr.common import Context
from sklearn.metrics import accuracy_score, log_loss

from sklearn_wine.task import CLASSES, get_parameters, load_data, make_model, set_parameters


class WineClient(NumPyClient):
    def __init__(self, context: Context) -> None:
        (self.x_train, self.y_train), (self.x_test, self.y_test) = load_data(
            int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])
        )
        self.epochs = int(context.run_config["local-epochs"])
        self.model = make_model(
            str(context.run_config["penalty"]), float(context.run_config["learning-rate"])
        )

    def fit(self, parameters, config):
        set_parameters(self.model, parameters)
        for _ in range(self.epochs):
            self.model.partial_fit(self.x_train, self.y_train, classes=CLASSES)
        return get_parameters(self.model), len(self.y_train), {}

    def evaluate(self, parameters, config):
        set_parameters(self.model, parameters)
        probabilities = self.model.predict_proba(self.x_test)
        loss = log_loss(self.y_test, probabilities, labels=CLASSES)
        accuracy = accuracy_score(self.y_test, self.model.predict(self.x_test))
        return float(loss), len(self.y_test), {"accuracy": float(accuracy)}


def client_fn(context: Context):
    return WineClient(context).to_client()


app = ClientApp(client_fn=client_fn)
