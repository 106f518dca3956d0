"""A node's calls carry an Ed25519 signature until it agreed on a session key with the
link, and the session key's tag after, its registration always a signature."""

from __future__ import annotations

from typing import Any

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from corolla.runtime.node._signing import RequestSigning
from corolla.transport import fleet_pb2, signed_reply_body
from corolla.trust import (
    MAC_KEY,
    PUBLIC_KEY_KEY,
    REPLY_ITEM_METHOD,
    SIGNATURE_KEY,
    NodeKey,
    RequestSignature,
    RequestVerifier,
    SessionOffer,
    accept_session,
    request_body,
)


class _Call(grpc.ClientCallDetails):
    def __init__(self, method: str) -> None:
        self.method = method
        self.timeout = None
        self.metadata = None
        self.credentials = None


def _sent(signing: RequestSigning, method: str, request: Any) -> dict[str, str]:
    seen: dict[str, str] = {}

    def continuation(details: grpc.ClientCallDetails, _request: Any) -> None:
        seen.update(dict(details.metadata or ()))

    signing.intercept_unary_unary(continuation, _Call(method), request)
    return seen


def test_calls_are_signed_until_a_session_is_in_use_and_tagged_after_it_registration_aside() -> (
    None
):
    # Arrange: the link's half of the agreement, as it answers a registration
    key = NodeKey(Ed25519PrivateKey.generate())
    offer = SessionOffer()
    link_session, link_public = accept_session(offer.public, key.public_text)
    signing = RequestSigning(key)
    heartbeat = fleet_pb2.HeartbeatRequest()

    # Act
    before = _sent(signing, "/corolla.v1.Fleet/Heartbeat", heartbeat)
    signing.use_session(offer.agree(link_public, key.public_text))
    after = _sent(signing, "/corolla.v1.Fleet/Heartbeat", heartbeat)
    register = _sent(signing, "/corolla.v1.Fleet/RegisterNode", fleet_pb2.RegisterNodeRequest())

    # Assert: the link takes the tag with the session key it agreed on
    assert SIGNATURE_KEY in before and MAC_KEY not in before
    assert MAC_KEY in after and SIGNATURE_KEY not in after
    assert SIGNATURE_KEY in register and register[PUBLIC_KEY_KEY] == key.public_text
    RequestVerifier().check(
        key.public_key,
        key.public_text,
        "/corolla.v1.Fleet/Heartbeat",
        RequestSignature.from_metadata(after.items()),
        request_body(heartbeat),
        link_session,
    )


def test_replies_on_a_reply_stream_are_tagged_item_by_item_once_a_session_is_in_use() -> None:
    key = NodeKey(Ed25519PrivateKey.generate())
    offer = SessionOffer()
    link_session, link_public = accept_session(offer.public, key.public_text)
    signing = RequestSigning(key)
    signing.use_session(offer.agree(link_public, key.public_text))
    reply = fleet_pb2.SendReplyRequest()
    reply.message.metadata.run_id = 7
    sent: list[Any] = []

    def continuation(_details: grpc.ClientCallDetails, requests: Any) -> None:
        sent.extend(requests)

    signing.intercept_stream_stream(
        continuation, _Call("/corolla.v1.Fleet/SendReplies"), iter([reply])
    )

    (item,) = sent
    assert item.signature.mac and not item.signature.signature
    signature = RequestSignature(
        item.signature.timestamp, item.signature.nonce, item.signature.mac, mac=True
    )
    RequestVerifier().check(
        key.public_key,
        key.public_text,
        REPLY_ITEM_METHOD,
        signature,
        signed_reply_body(item.message),
        link_session,
    )
