"""Messages: Flower's <-> Corolla's, metadata, content and errors."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from flwr import app as flwr_app
from flwr.app.message import make_message
from flwr.supercore.task_identity import TaskIdentity
from hypothesis import given
from hypothesis import strategies as st

from corolla.core import (
    Error,
    ErrorCode,
    Message,
    MessageError,
    Metadata,
    MetricRecord,
    RecordDict,
    RecordError,
)
from corolla.flower import (
    FROM_FLOWER_CODES,
    TO_FLOWER_CODES,
    error_from_flower,
    error_to_flower,
    message_from_flower,
    message_to_flower,
)

from ..core.strategies import record_dicts
from ..transport.strategies import metadata
from .strategies import flower_messages, flower_metadata, metadata_fields


@pytest.fixture
def flower_task() -> Iterator[None]:
    """Flower's identity of the running task, which its constructor of new messages reads
    (a SuperExec sets it in a real deployment); restored afterwards."""
    saved = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 11, 0, 21
    yield
    TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = saved


#: Corolla's codes that go to Flower and come back as themselves.
_ROUND_TRIP_CODES = sorted(
    c for c in TO_FLOWER_CODES if c not in (ErrorCode.TIMEOUT, ErrorCode.NO_HANDLER)
)

corolla_errors = st.builds(
    Error, code=st.sampled_from(_ROUND_TRIP_CODES).map(int), reason=st.text(max_size=40)
)


@st.composite
def corolla_messages(draw: st.DrawFn) -> Message:
    meta = draw(metadata)
    if draw(st.booleans()):
        return Message(draw(record_dicts), metadata=meta)
    return Message(error=draw(corolla_errors), metadata=meta)


@given(corolla_messages())
def test_a_message_survives_a_trip_through_flower(message):
    # Act
    back = message_from_flower(message_to_flower(message))

    # Assert
    assert back == message


@given(flower_messages())
def test_a_flower_message_survives_a_trip_through_corolla(message):
    # Act
    back = message_to_flower(message_from_flower(message))

    # Assert
    assert metadata_fields(back.metadata) == metadata_fields(message.metadata)
    assert back.has_error() == message.has_error()
    if message.has_error():
        assert (back.error.code, back.error.reason) == (message.error.code, message.error.reason)
    else:
        assert back.content == message.content


@given(flower_metadata)
def test_flower_metadata_is_carried_field_by_field(flower_meta):
    # Arrange
    message = make_message(flower_meta, content=flwr_app.RecordDict())

    # Act
    ours = message_from_flower(message).metadata

    # Assert
    assert {name: getattr(ours, name) for name in metadata_fields(flower_meta)} == metadata_fields(
        flower_meta
    )


@pytest.mark.usefixtures("flower_task")
def test_a_new_flower_message_and_its_flower_reply_convert_with_their_addressing():
    # Arrange: Flower's public constructors, for a new message and for a reply
    request = flwr_app.Message(flwr_app.RecordDict(), 7, "train", group_id="3", ttl=60.0)
    request.metadata.__dict__["_message_id"] = "abc"  # what the SuperLink would set
    reply = flwr_app.Message(
        flwr_app.RecordDict({"m": flwr_app.MetricRecord({"loss": 0.5})}), reply_to=request
    )

    # Act
    ours_request = message_from_flower(request)
    ours_reply = message_from_flower(reply)

    # Assert
    assert ours_request.metadata.run_id == 11
    assert ours_request.metadata.dst_node_id == 7
    assert ours_request.metadata.group_id == "3"
    assert ours_request.metadata.ttl == 60.0
    assert ours_reply.metadata.reply_to_message_id == "abc"
    assert ours_reply.metadata.src_node_id == 7
    assert ours_reply.metadata.message_type == "train"
    assert ours_reply.content == RecordDict({"m": MetricRecord({"loss": 0.5})})


def test_a_corolla_reply_reaches_flower_as_a_reply():
    # Arrange
    request = Message(RecordDict(), dst_node_id=4, message_type="evaluate", group_id="2")
    request = request.with_metadata(message_id="m1", run_id=9)
    reply = Message(RecordDict(), reply_to=request)

    # Act
    flower = message_to_flower(reply)

    # Assert
    assert flower.metadata.reply_to_message_id == "m1"
    assert flower.metadata.src_node_id == 4
    assert flower.metadata.run_id == 9
    assert flower.metadata.message_type == "evaluate"
    assert flower.metadata.group_id == "2"


@pytest.mark.usefixtures("flower_task")
def test_flower_task_ids_are_dropped():
    # Arrange
    flower = flwr_app.Message(flwr_app.RecordDict(), 1, "query", dst_task_id=5)

    # Act
    back = message_to_flower(message_from_flower(flower))

    # Assert
    assert (flower.metadata.src_task_id, flower.metadata.dst_task_id) == (21, 5)
    assert back.metadata.dst_task_id is None
    assert back.metadata.src_task_id is None


@pytest.mark.usefixtures("flower_task")
def test_message_content_arrays_are_viewed_not_copied():
    # Arrange
    array = flwr_app.Array(np.arange(256, dtype=np.int32))
    flower = flwr_app.Message(
        flwr_app.RecordDict({"model": flwr_app.ArrayRecord({"w": array})}), 1, "train"
    )

    # Act
    ours = message_from_flower(flower)

    # Assert
    w = ours.content.array_records["model"]["w"]
    assert np.shares_memory(w, np.frombuffer(array.data, dtype=np.uint8))


@pytest.mark.parametrize(
    ("flower_code", "corolla_code"),
    [
        (0, ErrorCode.UNKNOWN),
        (1, ErrorCode.APP_LOAD),
        (2, ErrorCode.CLIENT_APP_RAISED),
        (3, ErrorCode.MESSAGE_UNAVAILABLE),
        (4, ErrorCode.REPLY_UNAVAILABLE),
        (5, ErrorCode.NODE_UNAVAILABLE),
        (6, ErrorCode.MESSAGE),
        (7, ErrorCode.APP_LOAD),
        (8, ErrorCode.WORKER_CRASHED),
    ],
)
def test_flower_error_codes_map_by_meaning(flower_code, corolla_code):
    # Act
    error = error_from_flower(flwr_app.Error(flower_code, "why"))

    # Assert
    assert error == Error(corolla_code, "why")


def test_the_code_tables_cover_flowers_codes():
    # Arrange
    from flwr.common.constant import ErrorCode as FlowerErrorCode

    flower_codes = {v for k, v in vars(FlowerErrorCode).items() if k.isupper()}

    # Assert: every Flower code is read, and every Flower code written is one of them
    assert set(FROM_FLOWER_CODES) == flower_codes
    assert set(TO_FLOWER_CODES.values()) <= flower_codes


def test_a_corolla_client_app_without_a_handler_reaches_flower_as_one_that_raised():
    # Act: Flower's ClientApp raises for a message type it has no function for
    error = error_to_flower(Error(ErrorCode.NO_HANDLER, "no handler for 'query'"))

    # Assert
    assert (error.code, error.reason) == (2, "no handler for 'query'")


def test_a_corolla_timeout_reaches_flower_as_a_reply_that_never_came():
    # Act
    error = error_to_flower(Error(ErrorCode.TIMEOUT, "took 30 s"))

    # Assert
    assert (error.code, error.reason) == (4, "took 30 s")


@pytest.mark.parametrize("code", [ErrorCode.CONFIG, ErrorCode.AGGREGATION, 1234])
def test_a_corolla_code_flower_has_no_word_for_becomes_unknown_keeping_the_reason(code):
    # Act
    error = error_to_flower(Error(int(code), "the reason"))

    # Assert
    assert (error.code, error.reason) == (0, "the reason")


def test_a_flower_code_corolla_has_no_word_for_becomes_unknown_keeping_the_reason():
    # Act
    error = error_from_flower(flwr_app.Error(99, "the reason"))

    # Assert
    assert error == Error(ErrorCode.UNKNOWN, "the reason")


def test_a_flower_error_without_a_reason_has_an_empty_one():
    # Act
    error = error_from_flower(flwr_app.Error(2))

    # Assert
    assert error == Error(ErrorCode.CLIENT_APP_RAISED, "")


def test_a_flower_error_code_that_is_not_an_int_is_refused():
    # Act / Assert
    with pytest.raises(MessageError, match="must be an int"):
        error_from_flower(flwr_app.Error("2"))  # type: ignore[arg-type]


@pytest.mark.parametrize("legacy", ["get_parameters", "get_properties", "reconnect"])
def test_a_flower_legacy_message_type_is_refused_naming_it(legacy):
    # Arrange
    meta = flwr_app.Metadata(1, "m", 0, 2, "", "", 0.0, 10.0, legacy)
    flower = make_message(meta, content=flwr_app.RecordDict())

    # Act / Assert
    with pytest.raises(MessageError, match=legacy):
        message_from_flower(flower)


@pytest.mark.usefixtures("flower_task")
def test_content_corolla_cannot_hold_is_refused_naming_where_it_is():
    # Arrange
    content = flwr_app.RecordDict({"metrics": flwr_app.MetricRecord({"n": [3, True]})})
    flower = flwr_app.Message(content, 1, "train")

    # Act / Assert
    with pytest.raises(RecordError, match=r"message content.*'metrics'.*'n'"):
        message_from_flower(flower)


def test_a_converted_message_keeps_the_metadata_it_was_given():
    # Arrange: Corolla's own, not re-derived by Flower's constructor
    meta = Metadata(3, "id", 1, 2, "prev", "g", "query.stats", ttl=5.0, created_at=1.5)
    message = Message(RecordDict(), metadata=meta)

    # Act
    flower = message_to_flower(message)

    # Assert
    assert (flower.metadata.created_at, flower.metadata.ttl) == (1.5, 5.0)
    assert flower.metadata.message_type == "query.stats"
