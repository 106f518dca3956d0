"""Session keys: both halves of an agreement derive the same key, bound to the node's
registered key; a tag checks out only for the text it was made over."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from corolla.core import AuthenticationError
from corolla.trust import (
    NodeKey,
    RequestSignature,
    RequestVerifier,
    SessionOffer,
    accept_session,
    signed_text,
)

NODE_KEY = "ed25519:" + "A" * 43
METHOD = "/corolla.v1.Fleet/StatArrays"


@settings(max_examples=50, deadline=None)
@given(body=st.binary(max_size=2048), other=st.binary(max_size=2048))
def test_both_halves_agree_and_a_tag_checks_out_only_for_its_own_text(
    body: bytes, other: bytes
) -> None:
    offer = SessionOffer()
    link_side, link_public = accept_session(offer.public, NODE_KEY)
    node_side = offer.agree(link_public, NODE_KEY)
    signed = node_side.sign(METHOD, body)
    text = signed_text(METHOD, signed.timestamp, signed.nonce, body)
    tag = base64.urlsafe_b64decode(signed.signature)

    assert signed.mac
    assert link_side.matches(tag, text)
    assert link_side.matches(tag, signed_text(METHOD, signed.timestamp, signed.nonce, other)) == (
        body == other
    )


def test_the_key_is_bound_to_the_node_s_registered_key_and_fresh_for_each_offer() -> None:
    offer = SessionOffer()
    link_side, link_public = accept_session(offer.public, NODE_KEY)
    text = b"text"

    other_key = offer.agree(link_public, "ed25519:" + "B" * 43)
    again, _ = accept_session(SessionOffer().public, NODE_KEY)

    assert not link_side.matches(other_key.tag(text), text)
    assert not link_side.matches(again.tag(text), text)


@pytest.mark.parametrize(
    ("offer", "message"),
    [(b"", "got 0"), (b"\x01" * 33, "got 33"), (bytes(32), "not a usable X25519 key")],
)
def test_an_offer_that_is_no_usable_x25519_key_is_refused(offer: bytes, message: str) -> None:
    with pytest.raises(AuthenticationError, match=message):
        accept_session(offer, NODE_KEY)
    with pytest.raises(AuthenticationError, match=message):
        SessionOffer().agree(offer, NODE_KEY)


def test_a_tagged_request_is_refused_without_a_session_and_its_nonce_counts_against_replay() -> (
    None
):
    key = NodeKey(Ed25519PrivateKey.generate())
    offer = SessionOffer()
    session, _ = accept_session(offer.public, key.public_text)
    verifier = RequestVerifier()
    signed = session.sign(METHOD, b"body")

    with pytest.raises(AuthenticationError, match="does not hold"):
        verifier.check(key.public_key, key.public_text, METHOD, signed, b"body")
    verifier.check(key.public_key, key.public_text, METHOD, signed, b"body", session)
    with pytest.raises(AuthenticationError, match="replayed"):
        verifier.check(key.public_key, key.public_text, METHOD, signed, b"body", session)
    forged = RequestSignature(signed.timestamp, "other-nonce", signed.signature, mac=True)
    with pytest.raises(AuthenticationError, match="session tag does not check out"):
        verifier.check(key.public_key, key.public_text, METHOD, forged, b"body", session)


def test_metadata_with_both_a_signature_and_a_tag_is_refused() -> None:
    session, _ = accept_session(SessionOffer().public, NODE_KEY)
    tagged = session.sign(METHOD, b"").metadata()

    with pytest.raises(AuthenticationError, match="both a signature and a session tag"):
        RequestSignature.from_metadata((*tagged, ("corolla-signature", "x")))
    assert RequestSignature.from_metadata(tagged).mac
