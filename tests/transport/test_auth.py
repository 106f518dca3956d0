from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

from corolla.core import ArrayRecord, Message, Metadata, RecordDict
from corolla.transport import (
    AUTHORIZATION_KEY,
    INLINE_ARRAY_BYTES,
    bearer_metadata,
    bearer_token,
    message_to_proto,
    sha256_of,
    signed_reply_body,
)

from .strategies import messages


def test_round_trip() -> None:
    assert bearer_token(bearer_metadata("abc")) == "abc"


@pytest.mark.parametrize(
    ("metadata", "token"),
    [
        ([("authorization", "bearer xyz")], "xyz"),
        ([("user-agent", "x"), (AUTHORIZATION_KEY, "Bearer  t ")], "t"),
        ([("authorization", "Basic abc")], None),
        ([("authorization", "Bearer ")], None),
        ([("authorization-bin", b"Bearer x")], None),
        ([], None),
        (None, None),
    ],
)
def test_bearer_token(metadata: list[tuple[str, str | bytes]] | None, token: str | None) -> None:
    assert bearer_token(metadata) == token


@settings(max_examples=60, deadline=None)
@given(message=messages(), other=messages())
def test_a_reply_s_signed_body_stands_for_its_metadata_and_body_and_nothing_else(
    message: Message, other: Message
) -> None:
    # Arrange: both as a node sends them (arrays inline)
    proto, _ = message_to_proto(message, inline_bytes=INLINE_ARRAY_BYTES)
    other_proto, _ = message_to_proto(other, inline_bytes=INLINE_ARRAY_BYTES)
    content_hash = (
        sha256_of(proto.content.SerializeToString(deterministic=True))
        if proto.WhichOneof("body") == "content"
        else None
    )

    # Act
    body = signed_reply_body(proto)

    # Assert: the link's hash of the content stands in for it; another reply's body is
    # another text, unless both replies serialize alike
    assert signed_reply_body(proto, content_hash) == body
    alike = proto.SerializeToString(deterministic=True) == other_proto.SerializeToString(
        deterministic=True
    )
    assert (signed_reply_body(other_proto) == body) == alike


def test_a_reply_s_signed_body_changes_with_one_inline_array_byte() -> None:
    message = Message(
        RecordDict({"arrays": ArrayRecord({"w": np.zeros(1000, np.float32)})}),
        metadata=Metadata(
            run_id=1,
            message_id="",
            src_node_id=2,
            dst_node_id=0,
            reply_to_message_id="m",
            group_id="",
            message_type="train",
        ),
    )
    proto, _ = message_to_proto(message, inline_bytes=INLINE_ARRAY_BYTES)
    before = signed_reply_body(proto)
    entry = proto.content.records[0].array_record.entries[0]
    data = bytearray(entry.data)
    data[-1] ^= 1

    entry.data = bytes(data)

    assert signed_reply_body(proto) != before
    assert len(before) < 400  # the arrays' bytes are hashed, not carried
