"""Messages assembled from serialized parts equal those protobuf serializes itself."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from corolla.core import Message
from corolla.transport import fleet_pb2, message_pb2, message_to_proto, records_pb2, serverappio_pb2
from corolla.transport._framing import length_delimited, serialized_message

from .strategies import messages


@settings(max_examples=100, deadline=None)
@given(messages(), st.sampled_from([0, 1024 * 1024]))
def test_an_assembled_message_parses_as_the_message(message: Message, inline_bytes: int) -> None:
    proto, _ = message_to_proto(message, inline_bytes=inline_bytes)
    content = (
        proto.content.SerializeToString(deterministic=True)
        if proto.WhichOneof("body") == "content"
        else None
    )
    error = proto.error if proto.WhichOneof("body") == "error" else None

    assembled = serialized_message(proto.metadata, content=content, error=error)

    assert message_pb2.Message.FromString(assembled) == proto
    assert assembled == proto.SerializeToString(deterministic=True)


def test_empty_content_is_still_content() -> None:
    metadata = message_pb2.Metadata(run_id=1, message_type="train")

    parsed = message_pb2.Message.FromString(serialized_message(metadata, content=b""))

    assert parsed.WhichOneof("body") == "content"
    assert parsed.content == records_pb2.RecordDict()


@given(st.binary(min_size=0, max_size=70_000))
def test_a_length_delimited_field_has_protobufs_length_prefix(payload: bytes) -> None:
    # Lengths of 1, 2 and 3 varint bytes (< 128, < 16384, up to 70,000).
    response = serverappio_pb2.PullRepliesResponse.FromString(
        length_delimited(serverappio_pb2.PullRepliesResponse.MESSAGES_FIELD_NUMBER, b"")
        + length_delimited(
            serverappio_pb2.PullRepliesResponse.MESSAGES_FIELD_NUMBER,
            message_pb2.Message(
                content=records_pb2.RecordDict(records=[records_pb2.NamedRecord(name="x")]),
                metadata=message_pb2.Metadata(group_id=payload.hex()[:100]),
            ).SerializeToString(),
        )
    )
    assert len(response.messages) == 2

    config = records_pb2.ConfigValue.FromString(length_delimited(5, payload))
    assert config.bytes_value == payload


def test_a_receive_response_wraps_one_message() -> None:
    message = message_pb2.Message(metadata=message_pb2.Metadata(run_id=9, message_id="m"))

    response = fleet_pb2.ReceiveResponse.FromString(
        length_delimited(1, message.SerializeToString())
    )

    assert response.message == message
