"""A legacy Flower ClientApp's records <-> the Message API's: what goes in, what comes back."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.clientapp import ClientApp as FlowerClientApp

from corolla.core import (
    ArrayRecord,
    ConfigRecord,
    Error,
    ErrorCode,
    Message,
    MessageError,
    MetricRecord,
    RecordDict,
)
from corolla.flower._legacy import is_legacy, legacy_reply, legacy_request

ARRAYS = ArrayRecord({"w": np.zeros(3), "b": np.ones(2, dtype=np.float32)})
CONFIG = ConfigRecord({"server-round": 2, "lr": 0.1})


def _message(message_type: str, content: RecordDict | None = None) -> Message:
    content = RecordDict({"arrays": ARRAYS, "config": CONFIG}) if content is None else content
    return Message(content, dst_node_id=4, message_type=message_type, group_id="2")


def _status(code: int = 0, message: str = "Success") -> ConfigRecord:
    return ConfigRecord({"code": code, "message": message})


def _fit_reply(parameters: ArrayRecord, status: ConfigRecord | None = None) -> RecordDict:
    return RecordDict(
        {
            "fitres.metrics": ConfigRecord({"loss": 0.5, "steps": 3, "name": "x", "ok": True}),
            "fitres.num_examples": MetricRecord({"num_examples": 12}),
            "fitres.parameters": parameters,
            "fitres.status": status or _status(),
        }
    )


def test_a_client_fn_app_is_legacy_and_a_message_api_app_is_not():
    # Arrange
    def client_fn(context):  # pragma: no cover - never called
        raise AssertionError

    # Assert
    assert is_legacy(FlowerClientApp(client_fn=client_fn))
    assert not is_legacy(FlowerClientApp())


@pytest.mark.parametrize(
    ("message_type", "prefix"), [("train", "fitins"), ("evaluate", "evaluateins")]
)
def test_a_message_api_request_gets_the_legacy_records(message_type, prefix):
    # Arrange
    message = _message(message_type)

    # Act
    request = legacy_request(message)

    # Assert: the same arrays and config under the legacy names, the same addressing
    assert request is not None
    assert request.content == RecordDict(
        {f"{prefix}.parameters": ARRAYS, f"{prefix}.config": CONFIG}
    )
    assert request.metadata == message.metadata


def test_a_request_without_config_gets_an_empty_one():
    # Act
    request = legacy_request(_message("train", RecordDict({"model": ARRAYS})))

    # Assert
    assert request is not None and request.content["fitins.config"] == ConfigRecord()


@pytest.mark.parametrize(
    ("message_type", "content"),
    [
        ("query", None),
        ("train.custom", None),
        ("train", RecordDict({"fitins.parameters": ARRAYS, "fitins.config": CONFIG})),
        # a stage of Flower's SecAgg+, for its secaggplus_mod: config, no arrays
        ("train", RecordDict({"secaggplus": CONFIG})),
    ],
)
def test_a_request_the_legacy_app_reads_as_it_is_is_left_alone(message_type, content):
    assert legacy_request(_message(message_type, content)) is None


@pytest.mark.parametrize(
    "content",
    [
        RecordDict({"a": ARRAYS, "b": ARRAYS}),
        RecordDict({"arrays": ARRAYS, "config": CONFIG, "more": CONFIG}),
    ],
)
def test_a_request_with_other_than_one_array_record_is_refused(content):
    with pytest.raises(MessageError, match="one ArrayRecord and at most one ConfigRecord"):
        legacy_request(_message("train", content))


def test_a_fit_reply_keeps_the_request_names_and_the_numeric_metrics():
    # Arrange: legacy parameters have no names
    updated = ArrayRecord({"0": np.full(3, 2.0), "1": np.full(2, 3.0, dtype=np.float32)})

    # Act
    content = legacy_reply(_message("train"), _fit_reply(updated))

    # Assert
    assert content == RecordDict(
        {
            "arrays": ArrayRecord({"w": updated["0"], "b": updated["1"]}),
            "metrics": MetricRecord({"loss": 0.5, "steps": 3, "num-examples": 12}),
        }
    )


def test_a_fit_reply_of_another_number_of_arrays_keeps_flowers_names():
    # Arrange
    updated = ArrayRecord({"0": np.zeros(3)})

    # Act
    content = legacy_reply(_message("train"), _fit_reply(updated))

    # Assert: an aggregator rejects it, naming what it got
    assert isinstance(content, RecordDict) and list(content["arrays"]) == ["0"]


def test_an_evaluate_reply_gives_loss_and_examples_among_the_metrics():
    # Arrange
    reply = RecordDict(
        {
            "evaluateres.loss": MetricRecord({"loss": 0.25}),
            "evaluateres.num_examples": MetricRecord({"num_examples": 7}),
            "evaluateres.metrics": ConfigRecord({"accuracy": 0.9, "loss": 99.0}),
            "evaluateres.status": _status(),
        }
    )

    # Act
    content = legacy_reply(_message("evaluate"), reply)

    # Assert: the client's own "loss" metric does not hide its loss
    assert content == RecordDict(
        {"metrics": MetricRecord({"accuracy": 0.9, "loss": 0.25, "num-examples": 7})}
    )


def test_a_status_other_than_ok_is_an_error_reply_with_it():
    # Act
    error = legacy_reply(_message("train"), _fit_reply(ARRAYS, _status(3, "no data")))

    # Assert
    assert error == Error(
        int(ErrorCode.CLIENT_APP_RAISED), "the legacy client's status is 3: no data"
    )


def test_a_reply_missing_a_legacy_record_is_refused_naming_it():
    # Arrange
    reply = RecordDict({"fitres.status": _status()})

    # Act / Assert
    with pytest.raises(MessageError, match=r"no ConfigRecord 'fitres\.metrics'"):
        legacy_reply(_message("train"), reply)
