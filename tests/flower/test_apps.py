"""The adapters: Flower's apps as Corolla's, Corolla's passed through, and a Flower
ClientApp called as a Corolla one (Message API and legacy)."""

from __future__ import annotations

import numpy as np
import pytest
from flwr import app as flwr_app
from flwr.client import Client, NumPyClient
from flwr.clientapp import ClientApp as FlowerClientApp
from flwr.common import Code, FitRes, Parameters, Status
from flwr.serverapp import ServerApp as FlowerServerApp

from corolla.client import ClientApp
from corolla.core import (
    AppLoadError,
    ArrayRecord,
    ConfigRecord,
    Context,
    ErrorCode,
    Message,
    MessageError,
    MetricRecord,
    RecordDict,
)
from corolla.flower import FlowerClient, client_app_adapter, server_app_adapter
from corolla.server import ServerApp

ARRAYS = ArrayRecord({"w": np.arange(3.0), "b": np.ones(2, dtype=np.float32)})


def _train_message() -> Message:
    content = RecordDict({"arrays": ARRAYS, "config": ConfigRecord({"server-round": 2})})
    return Message(content, dst_node_id=3, message_type="train", group_id="2")


def _context() -> Context:
    return Context(run_id=1, node_id=3, node_config={"partition-id": 0}, run_config={})


def test_corolla_apps_pass_through_the_adapters_unchanged():
    # Arrange
    client, server = ClientApp(), ServerApp()

    # Assert
    assert client_app_adapter(client) is client
    assert server_app_adapter(server) is server


def test_flowers_apps_become_corolla_apps():
    assert isinstance(client_app_adapter(FlowerClientApp()), FlowerClient)
    assert isinstance(server_app_adapter(FlowerServerApp()), ServerApp)


@pytest.mark.parametrize(
    ("adapter", "role"), [(client_app_adapter, "clientapp"), (server_app_adapter, "serverapp")]
)
def test_anything_else_is_refused_naming_both_kinds(adapter, role):
    with pytest.raises(AppLoadError, match=f"{role} must be a flwr .* or a Corolla .*, got str"):
        adapter("an app")


class _Shifting(NumPyClient):
    """Adds the round to every array; reports how many arrays it had."""

    def fit(self, parameters, config):
        shifted = [p + config["server-round"] for p in parameters]
        return shifted, 5, {"arrays": len(parameters)}


def test_a_numpy_client_answers_a_message_api_train_message():
    # Arrange
    app = FlowerClient(FlowerClientApp(client_fn=lambda context: _Shifting().to_client()))
    message = _train_message()

    # Act
    reply = app(message, _context())

    # Assert: a reply to the message, in the Message API's records
    assert reply.metadata.reply_to_message_id == message.metadata.message_id
    assert reply.content == RecordDict(
        {
            "arrays": ArrayRecord({"w": np.arange(3.0) + 2, "b": np.full(2, 3, np.float32)}),
            "metrics": MetricRecord({"arrays": 2, "num-examples": 5}),
        }
    )


class _Refusing(Client):
    """A legacy ``Client`` that reports it could not fit."""

    def fit(self, ins):
        status = Status(Code.FIT_NOT_IMPLEMENTED, "no fit here")
        return FitRes(status, Parameters([], ""), 0, {})


def test_a_legacy_client_status_other_than_ok_is_an_error_reply():
    # Arrange
    app = FlowerClient(FlowerClientApp(client_fn=lambda context: _Refusing()))

    # Act
    reply = app(_train_message(), _context())

    # Assert
    assert reply.has_error() and reply.error.code == ErrorCode.CLIENT_APP_RAISED
    assert "no fit here" in reply.error.reason


def test_a_message_api_client_app_gets_the_message_as_it_is():
    # Arrange: an app that echoes what it was sent
    flower = FlowerClientApp()

    @flower.train()
    def train(message: flwr_app.Message, context: flwr_app.Context) -> flwr_app.Message:
        return flwr_app.Message(message.content, reply_to=message)

    # Act
    reply = FlowerClient(flower)(_train_message(), _context())

    # Assert
    assert reply.content == _train_message().content


def test_a_flower_client_app_that_returns_no_message_is_told_what_to_return():
    # Arrange: a train function that forgets to return its reply
    app = FlowerClientApp()

    @app.train()
    def train(message, context):
        message.content["arrays"].to_numpy_ndarrays()

    client = client_app_adapter(app)

    # Act / Assert
    with pytest.raises(MessageError, match=r"returned NoneType, not a flwr Message"):
        client(_train_message(), _context())
