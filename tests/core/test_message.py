from __future__ import annotations

import dataclasses
import pickle
import time

import numpy as np
import pytest
from hypothesis import given

from corolla.core import (
    DEFAULT_TTL,
    ArrayRecord,
    CorollaError,
    Error,
    ErrorCode,
    Message,
    MessageError,
    MessageType,
    Metadata,
    MetricRecord,
    RecordDict,
    new_message_id,
)
from corolla.core._message import validate_message_type

from .strategies import record_dicts


def content() -> RecordDict:
    return RecordDict(
        {"arrays": ArrayRecord({"w": np.arange(4.0)}), "metrics": MetricRecord({"n": 10})}
    )


def sent_request() -> Message:
    """A train message as the runtime delivers it: run id, message id and source filled in."""
    message = Message(content(), dst_node_id=17, message_type="train.custom", group_id="3", ttl=60)
    return message.with_metadata(run_id=5, message_id="req-1")


# A new message


def test_new_message_metadata() -> None:
    before = time.time()

    message = Message(content(), dst_node_id=17, message_type="train", group_id="3")

    m = message.metadata
    assert (m.run_id, m.message_id, m.reply_to_message_id) == (0, "", "")
    assert (m.src_node_id, m.dst_node_id) == (0, 17)
    assert (m.message_type, m.group_id, m.ttl) == ("train", "3", DEFAULT_TTL)
    assert before <= m.created_at <= time.time()


def test_new_message_needs_destination_and_type() -> None:
    with pytest.raises(MessageError, match="needs dst_node_id and message_type"):
        Message(content(), message_type="train")
    with pytest.raises(MessageError, match="needs dst_node_id and message_type"):
        Message(content(), dst_node_id=1)


@pytest.mark.parametrize("ttl", [0, -1.0, float("nan")])
def test_ttl_must_be_positive(ttl: float) -> None:
    with pytest.raises(MessageError, match="ttl"):
        Message(content(), dst_node_id=1, message_type="query", ttl=ttl)


# Content or error


def test_exactly_one_of_content_and_error() -> None:
    with pytest.raises(MessageError, match="exactly one of content and error"):
        Message(dst_node_id=1, message_type="train")
    with pytest.raises(MessageError, match="exactly one of content and error"):
        Message(content(), error=Error(1, "boom"), dst_node_id=1, message_type="train")


def test_content_and_error_must_have_their_types() -> None:
    with pytest.raises(MessageError, match="must be a RecordDict"):
        Message({"w": 1}, dst_node_id=1, message_type="train")  # type: ignore[arg-type]
    with pytest.raises(MessageError, match="must be an Error"):
        Message(error="boom", dst_node_id=1, message_type="train")  # type: ignore[arg-type]


def test_content_message() -> None:
    records = content()

    message = Message(records, dst_node_id=1, message_type="evaluate")

    assert message.has_content()
    assert not message.has_error()
    assert message.content is records
    with pytest.raises(MessageError, match="has content, not an error"):
        _ = message.error


def test_reading_content_of_an_error_message_raises() -> None:
    message = Message(error=Error(ErrorCode.TIMEOUT, "too slow"), reply_to=sent_request())

    assert message.has_error()
    assert not message.has_content()
    assert message.error == Error(ErrorCode.TIMEOUT, "too slow")
    with pytest.raises(MessageError, match=r"carries an error: \[TIMEOUT\] too slow") as info:
        _ = message.content
    assert isinstance(info.value, CorollaError)
    assert isinstance(info.value, ValueError)


def test_error_str_names_the_code() -> None:
    assert str(Error(ErrorCode.CLIENT_APP_RAISED, "ZeroDivisionError")) == (
        "[CLIENT_APP_RAISED] ZeroDivisionError"
    )
    assert str(Error(999, "from a newer peer")) == "[999] from a newer peer"


# Replies


def test_reply_metadata_is_derived_from_the_request() -> None:
    request = sent_request()
    before = time.time()

    reply = Message(RecordDict(), reply_to=request)

    r, q = reply.metadata, request.metadata
    assert r.run_id == q.run_id == 5
    assert (r.src_node_id, r.dst_node_id) == (q.dst_node_id, q.src_node_id) == (17, 0)
    assert r.reply_to_message_id == "req-1"
    assert r.group_id == "3"
    assert r.message_type == "train.custom"
    assert r.ttl == 60
    assert r.message_id == ""  # the runtime assigns it
    assert before <= r.created_at <= time.time()


def test_error_reply_metadata_is_derived_from_the_request() -> None:
    reply = Message(error=Error(ErrorCode.NO_HANDLER, "no query handler"), reply_to=sent_request())

    assert reply.metadata.reply_to_message_id == "req-1"
    assert reply.metadata.dst_node_id == 0


def test_reply_may_set_its_own_ttl() -> None:
    assert Message(RecordDict(), reply_to=sent_request(), ttl=5).metadata.ttl == 5.0


@pytest.mark.parametrize(
    "addressing",
    [{"dst_node_id": 3}, {"message_type": "train"}, {"group_id": "2"}],
    ids=lambda d: next(iter(d)),
)
def test_reply_takes_its_addressing_from_the_request_only(addressing: dict[str, object]) -> None:
    with pytest.raises(MessageError, match="addressing one way only"):
        Message(RecordDict(), reply_to=sent_request(), **addressing)  # type: ignore[arg-type]


def test_metadata_excludes_other_addressing() -> None:
    metadata = sent_request().metadata

    with pytest.raises(MessageError, match="addressing one way only"):
        Message(RecordDict(), metadata=metadata, reply_to=sent_request())
    with pytest.raises(MessageError, match="addressing one way only"):
        Message(RecordDict(), metadata=metadata, dst_node_id=2)
    with pytest.raises(MessageError, match="addressing one way only"):
        Message(RecordDict(), metadata=metadata, ttl=3)


# Message types


@pytest.mark.parametrize(
    "message_type",
    ["train", "evaluate", "query", "train.custom", "evaluate.on_test_set", "query._x", "system"],
)
def test_valid_message_types(message_type: str) -> None:
    message = Message(RecordDict(), dst_node_id=1, message_type=message_type)

    assert message.metadata.message_type == message_type


@pytest.mark.parametrize(
    "message_type",
    ["fit", "", "train.", "train.1x", ".train", "train.a.b", "train.a-b", "Train", "train "],
)
def test_invalid_message_types(message_type: str) -> None:
    with pytest.raises(MessageError, match="invalid message type"):
        Message(RecordDict(), dst_node_id=1, message_type=message_type)


def test_message_type_must_be_a_string() -> None:
    with pytest.raises(MessageError, match="must be a str"):
        validate_message_type(1)  # type: ignore[arg-type]


def test_message_type_constants() -> None:
    assert (MessageType.TRAIN, MessageType.EVALUATE, MessageType.QUERY) == (
        "train",
        "evaluate",
        "query",
    )
    assert all(validate_message_type(t) == t for t in MessageType.BASE)


# Immutability and derived copies


def test_with_metadata_derives_a_new_message() -> None:
    message = Message(content(), dst_node_id=1, message_type="train")

    sent = message.with_metadata(message_id="m-1", run_id=9, src_node_id=0)

    assert sent is not message
    assert (sent.metadata.message_id, sent.metadata.run_id) == ("m-1", 9)
    assert message.metadata.message_id == ""  # unchanged
    assert sent.content is message.content  # shared, not copied
    assert dataclasses.replace(sent.metadata, message_id="", run_id=0) == message.metadata


def test_with_metadata_keeps_an_error() -> None:
    reply = Message(error=Error(ErrorCode.TIMEOUT, "late"), reply_to=sent_request())

    assert reply.with_metadata(message_id="x").error == reply.error


def test_with_metadata_validates() -> None:
    message = Message(content(), dst_node_id=1, message_type="train")

    with pytest.raises(MessageError, match="invalid message type 'fit'"):
        message.with_metadata(message_type="fit")
    with pytest.raises(TypeError):
        message.with_metadata(round=3)


def test_metadata_cannot_be_changed_in_place() -> None:
    message = Message(content(), dst_node_id=1, message_type="train")

    with pytest.raises(AttributeError):
        message.metadata = message.metadata  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.metadata.dst_node_id = 2  # type: ignore[misc]


def test_message_from_metadata_is_used_as_is() -> None:
    metadata = Metadata(
        run_id=1,
        message_id="abc",
        src_node_id=4,
        dst_node_id=0,
        reply_to_message_id="req",
        group_id="2",
        message_type="evaluate",
        ttl=10.0,
        created_at=123.0,
    )

    assert Message(RecordDict(), metadata=metadata).metadata is metadata


def test_equality() -> None:
    request = sent_request()
    reply = Message(error=Error(1, "x"), reply_to=request)

    assert request == request.with_metadata()
    assert request != request.with_metadata(group_id="4")
    assert reply == reply.with_metadata()
    assert reply != Message(error=Error(1, "y"), metadata=reply.metadata)
    assert request != "message"


def test_repr() -> None:
    text = repr(Message(error=Error(ErrorCode.TIMEOUT, "late"), reply_to=sent_request()))

    assert text == "Message(type='train.custom', dst=0, src=17, group='3', error=[TIMEOUT] late)"


# Pickling


@pytest.mark.parametrize("protocol", range(2, pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_round_trip(protocol: int) -> None:
    request = sent_request()
    reply = Message(error=Error(ErrorCode.WORKER_CRASHED, "killed"), reply_to=request)

    for message in (request, reply):
        loaded = pickle.loads(pickle.dumps(message, protocol=protocol))

        assert loaded == message
        assert loaded.metadata == message.metadata
        assert loaded.has_error() == message.has_error()


def test_pickle_out_of_band_does_not_copy_arrays() -> None:
    request = sent_request()
    buffers: list[pickle.PickleBuffer] = []

    data = pickle.dumps(request, protocol=5, buffer_callback=buffers.append)
    loaded = pickle.loads(data, buffers=buffers)

    original = request.content.array_records["arrays"]["w"]
    assert np.shares_memory(loaded.content.array_records["arrays"]["w"], original)


@given(record_dicts)
def test_any_content_pickles(records: RecordDict) -> None:
    message = Message(records, dst_node_id=2, message_type="query")

    assert pickle.loads(pickle.dumps(message, protocol=5)) == message


def test_new_message_ids_are_unique_hex() -> None:
    ids = {new_message_id() for _ in range(1000)}

    assert len(ids) == 1000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
