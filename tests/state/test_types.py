"""The values of the state API: stored messages validate themselves."""

from __future__ import annotations

import dataclasses

import pytest

from corolla.core import Error, MessageError
from corolla.state import InvalidBlobHashError, StoredMessage

from .doubles import CONTENT, instruction


def test_exactly_one_of_content_and_error():
    metadata = instruction(1, 2).metadata

    with pytest.raises(MessageError, match="exactly one"):
        StoredMessage(metadata)
    with pytest.raises(MessageError, match="exactly one"):
        StoredMessage(metadata, content_hash=CONTENT, error=Error(1, "x"))


def test_content_hash_must_be_a_digest():
    with pytest.raises(InvalidBlobHashError):
        StoredMessage(instruction(1, 2).metadata, content_hash="../../secrets")


@pytest.mark.parametrize(
    ("change", "match"),
    [({"message_type": "fly"}, "message type"), ({"ttl": 0.0}, "ttl"), ({"ttl": -1.0}, "ttl")],
)
def test_metadata_is_checked(change, match):
    metadata = dataclasses.replace(instruction(1, 2).metadata, **change)

    with pytest.raises(MessageError, match=match):
        StoredMessage(metadata, content_hash=CONTENT)


def test_metadata_must_be_metadata():
    with pytest.raises(MessageError, match="Metadata"):
        StoredMessage({"run_id": 1}, content_hash=CONTENT)  # type: ignore[arg-type]


def test_inline_content_is_bytes_named_by_its_hash():
    metadata = instruction(1, 2).metadata

    with pytest.raises(MessageError, match="inline content"):
        StoredMessage(metadata, error=Error(1, "x"), content=b"records")
    with pytest.raises(MessageError, match="inline content"):
        StoredMessage(metadata, content_hash=CONTENT, content="records")  # type: ignore[arg-type]
