"""A link with auth on admits only registered node keys, and every request signed (or,
after a registration that offered one, tagged with the node's session key).

Real nodes (:class:`Node`, signing with their keys) serve a run; raw Fleet calls play the
attacker: an unknown key, an unsigned call, a replayed, altered, delayed or re-keyed one,
a session tag under another key or a session since replaced, a bad session offer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from corolla.core import ErrorCode, Message, RecordDict
from corolla.runtime import GrpcGrid, Link, LinkLimits, Node, make_bundle
from corolla.state import DirectoryBlobStore
from corolla.transport import (
    bearer_metadata,
    channel_options,
    fleet_pb2,
    fleet_pb2_grpc,
    signed_reply_body,
)
from corolla.trust import (
    PUBLIC_KEY_KEY,
    REPLY_ITEM_METHOD,
    NodeKey,
    SessionKey,
    SessionOffer,
    sign_request,
)

from ..node.test_node import COUNTER_APP, _app, _wait_connected

REGISTER = "/corolla.v1.Fleet/RegisterNode"
STAT = "/corolla.v1.Fleet/StatArrays"
SHA = "ab" * 32
CONFIG = {"partition-id": 0, "num-partitions": 1}


@pytest.fixture
def link(tmp_path: Path) -> Iterator[Link]:
    with Link(
        tmp_path / "link",
        fleet_address="127.0.0.1:0",
        control_address="127.0.0.1:0",
        limits=LinkLimits(sweep_interval=0.05, request_max_age_s=5.0),
        auth=True,
    ) as running:
        yield running


@pytest.fixture
def fleet(link: Link) -> Iterator[fleet_pb2_grpc.FleetStub]:
    with grpc.insecure_channel(link.fleet_address, options=channel_options()) as channel:
        yield fleet_pb2_grpc.FleetStub(channel)


def _key() -> NodeKey:
    return NodeKey(Ed25519PrivateKey.generate())


def _register(
    fleet: fleet_pb2_grpc.FleetStub, key: NodeKey, request: fleet_pb2.RegisterNodeRequest | None
) -> fleet_pb2.RegisterNodeResponse:
    request = request or fleet_pb2.RegisterNodeRequest()
    signed = sign_request(key, REGISTER, request.SerializeToString(deterministic=True))
    metadata = (*signed.metadata(), (PUBLIC_KEY_KEY, key.public_text))
    response: fleet_pb2.RegisterNodeResponse = fleet.RegisterNode(
        request, metadata=metadata, timeout=10
    )
    return response


def _refusal(call: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()  # type: ignore[operator]
    error = caught.value
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
    return error


def _details(error: grpc.RpcError) -> str:
    return str(error.details())  # type: ignore[attr-defined]


def test_a_node_with_a_registered_key_serves_runs_signing_every_request(
    link: Link, tmp_path: Path
) -> None:
    # Arrange: the admin registers the key the node printed (`corolla node keys`)
    key, _ = NodeKey.load_or_create(tmp_path / "node")
    link.trust.add_node_key(key.public_text, name="hospital-a")
    blobs = DirectoryBlobStore(link.state_dir / "blobs")
    bundle = blobs.put(make_bundle(_app(tmp_path / "app", "counter_app", COUNTER_APP)))
    run = link.state.create_run(bundle, {})

    # Act
    with (
        Node(link.fleet_address, tmp_path / "node", node_config=CONFIG) as node,
        grpc.insecure_channel(link.serverappio_address, options=channel_options()) as appio,
    ):
        node_id = _wait_connected(node)
        grid = GrpcGrid(appio, run.run_id, link.issue_run_secret(run.run_id))
        counts = []
        for _ in range(2):
            ids = grid.send([Message(RecordDict(), dst_node_id=node_id, message_type="train")])
            (reply,) = grid.receive(ids, timeout=30)
            counts.append(int(reply.content["metrics"]["count"]))

    # Assert: the ClientApp ran (bundle pulled, run read, replies sent: all signed)
    assert counts == [1, 2]
    assert link.trust.bound_key(node_id) == key.public_text


def test_a_node_whose_key_is_not_registered_is_refused_naming_the_key(
    fleet: fleet_pb2_grpc.FleetStub,
) -> None:
    key = _key()

    error = _refusal(lambda: _register(fleet, key, None))

    assert key.public_text in _details(error)
    assert "corolla nodes add" in _details(error)


def test_a_registration_without_a_key_or_a_signature_is_refused(
    link: Link, fleet: fleet_pb2_grpc.FleetStub
) -> None:
    key = _key()
    link.trust.add_node_key(key.public_text)
    request = fleet_pb2.RegisterNodeRequest()

    unsigned = _refusal(
        lambda: fleet.RegisterNode(request, metadata=((PUBLIC_KEY_KEY, key.public_text),))
    )
    keyless = _refusal(lambda: fleet.RegisterNode(request))

    assert "not signed" in _details(unsigned)
    assert "presented none" in _details(keyless)


def test_a_registration_signed_by_another_key_than_the_one_presented_is_refused(
    link: Link, fleet: fleet_pb2_grpc.FleetStub
) -> None:
    # An attacker presents a registered key it does not hold.
    victim, attacker = _key(), _key()
    link.trust.add_node_key(victim.public_text)
    request = fleet_pb2.RegisterNodeRequest()
    signed = sign_request(attacker, REGISTER, request.SerializeToString(deterministic=True))
    metadata = (*signed.metadata(), (PUBLIC_KEY_KEY, victim.public_text))

    error = _refusal(lambda: fleet.RegisterNode(request, metadata=metadata))

    assert "signature does not check out" in _details(error)


def _joined(link: Link, fleet: fleet_pb2_grpc.FleetStub) -> tuple[NodeKey, str]:
    key = _key()
    link.trust.add_node_key(key.public_text)
    response = _register(fleet, key, None)
    return key, response.token


def _stat(
    fleet: fleet_pb2_grpc.FleetStub, token: str, metadata: tuple[tuple[str, str], ...], sha: str
) -> fleet_pb2.StatArraysResponse:
    response: fleet_pb2.StatArraysResponse = fleet.StatArrays(
        fleet_pb2.StatArraysRequest(sha256=[sha]),
        metadata=(*bearer_metadata(token), *metadata),
        timeout=10,
    )
    return response


def _stat_body(sha: str) -> bytes:
    return fleet_pb2.StatArraysRequest(sha256=[sha]).SerializeToString(deterministic=True)


def test_a_replayed_request_is_refused(link: Link, fleet: fleet_pb2_grpc.FleetStub) -> None:
    key, token = _joined(link, fleet)
    signed = sign_request(key, STAT, _stat_body(SHA)).metadata()

    first = _stat(fleet, token, signed, SHA)
    error = _refusal(lambda: _stat(fleet, token, signed, SHA))

    assert not first.arrays[0].complete
    assert "replayed" in _details(error)


def test_an_altered_request_is_refused(link: Link, fleet: fleet_pb2_grpc.FleetStub) -> None:
    # Signed for one array, sent asking for another.
    key, token = _joined(link, fleet)
    signed = sign_request(key, STAT, _stat_body("1" * 64)).metadata()

    error = _refusal(lambda: _stat(fleet, token, signed, SHA))

    assert "signature does not check out" in _details(error)


def test_a_request_signed_for_another_method_is_refused(
    link: Link, fleet: fleet_pb2_grpc.FleetStub
) -> None:
    key, token = _joined(link, fleet)
    signed = sign_request(key, "/corolla.v1.Fleet/PullArrays", _stat_body(SHA)).metadata()

    error = _refusal(lambda: _stat(fleet, token, signed, SHA))

    assert "signature does not check out" in _details(error)


def test_a_delayed_request_is_refused(link: Link, fleet: fleet_pb2_grpc.FleetStub) -> None:
    # Signed 30 s ago; the link's window is 5 s.
    key, token = _joined(link, fleet)
    signed = sign_request(key, STAT, _stat_body(SHA), now=time.time() - 30).metadata()

    error = _refusal(lambda: _stat(fleet, token, signed, SHA))

    assert "within 5 s" in _details(error)


def test_a_node_s_token_signed_with_another_key_is_refused(
    link: Link, fleet: fleet_pb2_grpc.FleetStub
) -> None:
    # A stolen token, with requests signed by the thief's own registered key.
    _, token = _joined(link, fleet)
    thief, _ = _joined(link, fleet)
    signed = sign_request(thief, STAT, _stat_body(SHA)).metadata()

    error = _refusal(lambda: _stat(fleet, token, signed, SHA))

    assert "signature does not check out" in _details(error)


def test_a_node_whose_key_is_removed_is_refused_from_its_next_request(
    link: Link, fleet: fleet_pb2_grpc.FleetStub
) -> None:
    key, token = _joined(link, fleet)
    body = _stat_body(SHA)
    _stat(fleet, token, sign_request(key, STAT, body).metadata(), SHA)

    link.trust.remove_node_key(key.public_text)
    error = _refusal(lambda: _stat(fleet, token, sign_request(key, STAT, body).metadata(), SHA))

    assert "no registered key" in _details(error)


def test_an_unsigned_reply_on_a_reply_stream_is_refused_and_the_stream_goes_on(
    link: Link, fleet: fleet_pb2_grpc.FleetStub
) -> None:
    key, token = _joined(link, fleet)
    opening = sign_request(key, "/corolla.v1.Fleet/SendReplies", b"").metadata()
    reply = fleet_pb2.SendReplyRequest()
    reply.message.metadata.src_node_id = int(token.split(".")[0])

    responses = list(
        fleet.SendReplies(
            iter([reply, reply]), metadata=(*bearer_metadata(token), *opening), timeout=10
        )
    )

    assert len(responses) == 2
    assert all(r.error.code == ErrorCode.UNAUTHENTICATED for r in responses)
    assert "not signed" in responses[0].error.reason


def test_a_key_registering_again_and_again_is_slowed_down(
    link: Link, fleet: fleet_pb2_grpc.FleetStub
) -> None:
    # Each registration makes a node in the state: a key cannot fill it.
    key = _key()
    link.trust.add_node_key(key.public_text)
    for _ in range(10):
        _register(fleet, key, None)

    with pytest.raises(grpc.RpcError) as caught:
        _register(fleet, key, None)

    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
    assert "10 times within a minute" in _details(caught.value)


def test_refused_requests_are_recorded_in_the_audit_log(
    link: Link, fleet: fleet_pb2_grpc.FleetStub
) -> None:
    key, token = _joined(link, fleet)
    signed = sign_request(key, STAT, _stat_body(SHA)).metadata()
    _stat(fleet, token, signed, SHA)
    _refusal(lambda: _stat(fleet, token, signed, SHA))  # replayed
    stranger = _key()
    _refusal(lambda: _register(fleet, stranger, None))  # unknown key

    records = audit_records(link, "request.refused")

    assert [r["data"]["method"] for r in records] == ["StatArrays", "RegisterNode"]
    assert "replayed" in records[0]["data"]["reason"]
    assert records[0]["data"]["node_id"] == int(token.split(".")[0])
    assert records[1]["data"]["key"] == stranger.public_text


def audit_records(link: Link, kind: str, count: int = 2) -> list[dict[str, Any]]:
    """The records of ``kind`` in the link's audit log, once there are ``count`` (they
    are written from the link's threads), or those there are after 5 s."""
    path = link.state_dir / "audit.log"
    found: list[dict[str, Any]] = []
    for _ in range(100):
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        found = [r for r in lines if r["kind"] == kind]
        if len(found) >= count:
            break
        time.sleep(0.05)
    return found


def test_a_registration_with_an_unregistered_key_is_refused_before_its_signature_is_checked(
    fleet: fleet_pb2_grpc.FleetStub,
) -> None:
    # The link kept the nonces of every key whose signature checked out, registered or
    # not: each fresh key a caller made grew its memory for good.
    key = _key()
    request = fleet_pb2.RegisterNodeRequest()
    signed = sign_request(key, REGISTER, b"")
    signed.signature = signed.signature[::-1]  # broken: refused for the key all the same
    metadata = (*signed.metadata(), (PUBLIC_KEY_KEY, key.public_text))

    error = _refusal(lambda: fleet.RegisterNode(request, metadata=metadata))

    assert "is not registered on this link" in _details(error)


def _session_joined(link: Link, fleet: fleet_pb2_grpc.FleetStub) -> tuple[SessionKey, str]:
    """A node registered with a session key offered, as ``corolla node`` registers."""
    key = _key()
    link.trust.add_node_key(key.public_text)
    offer = SessionOffer()
    response = _register(fleet, key, fleet_pb2.RegisterNodeRequest(session_key=offer.public))
    return offer.agree(response.session_key, key.public_text), response.token


def test_a_node_that_offered_a_session_key_authenticates_its_requests_with_it(
    link: Link, fleet: fleet_pb2_grpc.FleetStub
) -> None:
    session, token = _session_joined(link, fleet)

    answer = _stat(fleet, token, session.sign(STAT, _stat_body(SHA)).metadata(), SHA)

    assert not answer.arrays[0].complete


def test_a_replayed_altered_or_delayed_session_request_is_refused(
    link: Link, fleet: fleet_pb2_grpc.FleetStub
) -> None:
    session, token = _session_joined(link, fleet)
    signed = session.sign(STAT, _stat_body(SHA)).metadata()
    _stat(fleet, token, signed, SHA)

    replayed = _refusal(lambda: _stat(fleet, token, signed, SHA))
    altered = _refusal(
        lambda: _stat(fleet, token, session.sign(STAT, _stat_body("1" * 64)).metadata(), SHA)
    )
    old = session.sign(STAT, _stat_body(SHA), now=time.time() - 30).metadata()
    delayed = _refusal(lambda: _stat(fleet, token, old, SHA))

    assert "replayed" in _details(replayed)
    assert "session tag does not check out" in _details(altered)
    assert "within 5 s" in _details(delayed)


def test_a_session_tag_under_another_node_s_session_key_is_refused(
    link: Link, fleet: fleet_pb2_grpc.FleetStub
) -> None:
    # A stolen token, with requests tagged under the thief's own session key.
    _, token = _session_joined(link, fleet)
    thief, _ = _session_joined(link, fleet)

    error = _refusal(lambda: _stat(fleet, token, thief.sign(STAT, _stat_body(SHA)).metadata(), SHA))

    assert "session tag does not check out" in _details(error)


def test_a_session_tag_is_refused_once_the_node_registered_again_or_without_a_session(
    link: Link, fleet: fleet_pb2_grpc.FleetStub
) -> None:
    # Arrange: a node registers with a session key, then again without offering one
    key = _key()
    link.trust.add_node_key(key.public_text)
    offer = SessionOffer()
    first = _register(fleet, key, fleet_pb2.RegisterNodeRequest(session_key=offer.public))
    session = offer.agree(first.session_key, key.public_text)
    node_id = int(first.token.split(".")[0])
    again = _register(fleet, key, fleet_pb2.RegisterNodeRequest(node_id=node_id, token=first.token))

    # Act: the old session's tag, and a signature, on the new registration's token
    error = _refusal(
        lambda: _stat(fleet, again.token, session.sign(STAT, _stat_body(SHA)).metadata(), SHA)
    )
    signed = _stat(fleet, again.token, sign_request(key, STAT, _stat_body(SHA)).metadata(), SHA)

    # Assert
    assert not again.session_key
    assert "session key this link does not hold" in _details(error)
    assert not signed.arrays[0].complete


def test_a_session_offer_that_is_no_x25519_key_is_refused_and_registers_nothing(
    link: Link, fleet: fleet_pb2_grpc.FleetStub
) -> None:
    key = _key()
    link.trust.add_node_key(key.public_text)
    nodes_before = len(link.state.list_nodes())

    short = _refusal(
        lambda: _register(fleet, key, fleet_pb2.RegisterNodeRequest(session_key=b"\x01" * 31))
    )
    low_order = _refusal(
        lambda: _register(fleet, key, fleet_pb2.RegisterNodeRequest(session_key=bytes(32)))
    )

    assert "32 bytes, got 31" in _details(short)
    assert "not a usable X25519 key" in _details(low_order)
    assert len(link.state.list_nodes()) == nodes_before


def test_a_reply_tagged_with_the_session_key_is_taken_and_one_signed_and_tagged_is_refused(
    link: Link, fleet: fleet_pb2_grpc.FleetStub
) -> None:
    # Arrange: a reply item tagged under the session key, and one that carries a
    # signature beside its tag
    session, token = _session_joined(link, fleet)
    node_id = int(token.split(".")[0])
    opening = session.sign("/corolla.v1.Fleet/SendReplies", b"").metadata()
    tagged = fleet_pb2.SendReplyRequest()
    tagged.message.metadata.src_node_id = node_id
    tagged.message.metadata.reply_to_message_id = "no-such-message"
    item = session.sign(REPLY_ITEM_METHOD, signed_reply_body(tagged.message))
    tagged.signature.timestamp, tagged.signature.nonce = item.timestamp, item.nonce
    tagged.signature.mac = item.signature
    both = fleet_pb2.SendReplyRequest()
    both.CopyFrom(tagged)
    both.signature.signature = item.signature

    # Act
    responses = list(
        fleet.SendReplies(
            iter([tagged, both]), metadata=(*bearer_metadata(token), *opening), timeout=10
        )
    )

    # Assert: the tag checked out (the reply is empty: refused for that, not for its
    # tag); the other is refused for carrying both
    assert responses[0].error.code == ErrorCode.MESSAGE
    assert "neither content nor an error" in responses[0].error.reason
    assert responses[1].error.code == ErrorCode.UNAUTHENTICATED
    assert "both a signature and a session tag" in responses[1].error.reason


def test_a_node_serves_a_restarted_link_with_a_new_session_key(tmp_path: Path) -> None:
    # The link keeps session keys in memory only: a node whose link restarted registers
    # again, agrees on a new key, and its tagged replies are taken.
    key, _ = NodeKey.load_or_create(tmp_path / "node")
    limits = LinkLimits(sweep_interval=0.05)
    with Link(
        tmp_path / "link",
        fleet_address="127.0.0.1:0",
        control_address="127.0.0.1:0",
        limits=limits,
        auth=True,
    ) as first:
        port = first.fleet_port
        first.trust.add_node_key(key.public_text)
        blobs = DirectoryBlobStore(first.state_dir / "blobs")
        bundle = blobs.put(make_bundle(_app(tmp_path / "app", "counter_app", COUNTER_APP)))
        run = first.state.create_run(bundle, {})
        node = Node(
            first.fleet_address, tmp_path / "node", node_config=CONFIG, backoff=(0.05, 0.2)
        ).start()
        try:
            node_id = _wait_connected(node)
            counts = [_count(first, run.run_id, node_id)]
            first.stop()
            with Link(
                tmp_path / "link",
                fleet_address=f"127.0.0.1:{port}",
                control_address="127.0.0.1:0",
                limits=limits,
                auth=True,
            ) as again:
                # A restarted link fails the runs it had: the node serves the next one.
                after = again.state.create_run(bundle, {})
                counts.append(_count(again, after.run_id, node_id))
        finally:
            node.stop()

    assert counts == [1, 1]


def _count(link: Link, run_id: int, node_id: int) -> int:
    """One train message to ``node_id`` in run ``run_id``, answered within 30 s: the
    count its ClientApp replied."""
    with grpc.insecure_channel(link.serverappio_address, options=channel_options()) as appio:
        grid = GrpcGrid(appio, run_id, link.issue_run_secret(run_id))
        for _ in range(200):  # until the node registered again with this link
            if any(n.node_id == node_id and n.online for n in link.state.list_nodes()):
                break
            time.sleep(0.05)
        ids = grid.send([Message(RecordDict(), dst_node_id=node_id, message_type="train")])
        (reply,) = grid.receive(ids, timeout=30)
    return int(reply.content["metrics"]["count"])
