"""LinkState conformance: node registration, identity, heartbeats, listing."""

from __future__ import annotations

import pytest

from corolla.core import ConfigError, ErrorCode
from corolla.state import (
    DeliveryStatus,
    LinkState,
    NodeAuthenticationError,
    NodeIdentity,
    RunInfo,
    UnknownNodeError,
)

from .doubles import FakeClock, instruction


def test_register_returns_a_positive_63_bit_id_and_a_token(state: LinkState, clock: FakeClock):
    identity = state.register_node(
        attributes={"gpu": "a100"}, node_config={"partition-id": 3, "fast": True}
    )

    node = state.get_node(identity.node_id)
    assert 0 < identity.node_id < 2**63
    assert len(identity.token) >= 40
    assert node.attributes == {"gpu": "a100"}
    assert node.node_config == {"partition-id": 3, "fast": True}
    assert node.online is True
    assert node.registered_at == node.last_heartbeat == clock.now


def test_each_registration_gets_its_own_id_and_token(state: LinkState):
    identities = [state.register_node() for _ in range(20)]

    assert len({i.node_id for i in identities}) == 20
    assert len({i.token for i in identities}) == 20


def test_token_is_not_in_the_repr():
    identity = NodeIdentity(7, "s3cret-token")

    assert "s3cret" not in repr(identity)


def test_a_restarted_node_gets_its_id_back_with_new_attributes(state: LinkState):
    identity = state.register_node(attributes={"site": "a"})
    state.mark_node_offline(identity.node_id)

    again = state.register_node(attributes={"site": "b"}, heartbeat_interval=5.0, identity=identity)

    node = state.get_node(identity.node_id)
    assert again == identity
    assert (node.online, node.attributes, node.heartbeat_interval) == (True, {"site": "b"}, 5.0)
    assert len(state.list_nodes()) == 1


def test_re_registration_with_a_wrong_token_is_refused(state: LinkState):
    identity = state.register_node()

    with pytest.raises(NodeAuthenticationError, match=str(identity.node_id)):
        state.register_node(identity=NodeIdentity(identity.node_id, "guessed"))


def test_re_registration_of_an_unknown_id_is_refused(state: LinkState):
    with pytest.raises(UnknownNodeError, match="12345") as info:
        state.register_node(identity=NodeIdentity(12345, "whatever"))

    assert info.value.code == ErrorCode.NODE_UNAVAILABLE


def test_authenticate_checks_the_token(state: LinkState):
    identity = state.register_node()

    assert state.authenticate_node(identity.node_id, identity.token).node_id == identity.node_id
    with pytest.raises(NodeAuthenticationError):
        state.authenticate_node(identity.node_id, identity.token + "x")
    with pytest.raises(UnknownNodeError):
        state.authenticate_node(identity.node_id + 1, identity.token)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"attributes": {"gpu": 1}}, "attributes"),
        ({"attributes": {"": "x"}}, "attributes"),
        ({"node_config": {"x": [1, 2]}}, "node config"),
        ({"node_config": {"x": float("nan")}}, "finite"),
        ({"heartbeat_interval": 0}, "heartbeat interval"),
        ({"heartbeat_interval": float("inf")}, "heartbeat interval"),
    ],
)
def test_invalid_registrations_are_refused(state: LinkState, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        state.register_node(**kwargs)

    assert state.list_nodes() == []


def test_heartbeat_records_the_time(state: LinkState, clock: FakeClock, node_id: int):
    clock.advance(7)

    state.heartbeat(node_id, heartbeat_interval=20.0)

    node = state.get_node(node_id)
    assert (node.last_heartbeat, node.heartbeat_interval) == (clock.now, 20.0)


def test_heartbeat_of_an_unknown_node_raises(state: LinkState):
    with pytest.raises(UnknownNodeError, match="99"):
        state.heartbeat(99)


def test_heartbeats_of_many_nodes_record_each_known_one_and_name_the_unknown(
    state: LinkState, clock: FakeClock
):
    beating = state.register_node(heartbeat_interval=10.0).node_id
    offline = state.register_node().node_id
    quiet = state.register_node().node_id
    state.mark_node_offline(offline)
    clock.advance(7)

    beats = state.heartbeat_many([beating, 99, offline, beating, 2**64 - 1])

    assert beats[beating] is None and beats[offline] is None
    assert isinstance(beats[99], UnknownNodeError) and "99" in str(beats[99])
    assert isinstance(beats[2**64 - 1], UnknownNodeError)
    assert len(beats) == 4
    for node_id in (beating, offline):
        node = state.get_node(node_id)
        assert (node.online, node.last_heartbeat) == (True, clock.now)
    assert state.get_node(beating).heartbeat_interval == 10.0
    assert state.get_node(quiet).last_heartbeat == clock.now - 7


def test_a_silent_node_is_marked_offline_after_interval_times_tolerance(
    state: LinkState, clock: FakeClock
):
    quiet = state.register_node(heartbeat_interval=10.0).node_id
    chatty = state.register_node(heartbeat_interval=10.0).node_id
    slow = state.register_node(heartbeat_interval=100.0).node_id

    clock.advance(20)
    assert state.mark_stale_nodes_offline(tolerance=2.0) == []  # exactly at the limit
    clock.advance(1)
    state.heartbeat(chatty)
    offline = state.mark_stale_nodes_offline(tolerance=2.0)

    assert offline == [quiet]
    assert [n.node_id for n in state.list_nodes(online=True)] == sorted([chatty, slow])
    assert [n.node_id for n in state.list_nodes(online=False)] == [quiet]
    assert state.mark_stale_nodes_offline(tolerance=2.0) == []  # already offline


def test_a_heartbeat_brings_an_offline_node_back(state: LinkState, clock: FakeClock, node_id):
    clock.advance(1000)
    state.mark_stale_nodes_offline()

    state.heartbeat(node_id)

    assert state.get_node(node_id).online is True


def test_going_offline_answers_the_nodes_open_messages(
    state: LinkState, clock: FakeClock, run: RunInfo, node_id: int
):
    other = state.register_node(heartbeat_interval=1000.0).node_id
    delivered, pending, elsewhere = state.store_messages(
        [
            instruction(run.run_id, node_id),
            instruction(run.run_id, node_id),
            instruction(run.run_id, other),
        ]
    )
    state.fetch_messages(node_id, limit=1)
    clock.advance(100)

    assert state.mark_stale_nodes_offline() == [node_id]

    replies = state.get_replies(run.run_id, [delivered, pending, elsewhere])
    assert [r.metadata.reply_to_message_id for r in replies] == [delivered, pending]
    assert {r.error.code for r in replies if r.error} == {ErrorCode.NODE_UNAVAILABLE}
    assert all(r.metadata.src_node_id == node_id and r.metadata.dst_node_id == 0 for r in replies)
    assert state.message_status(delivered) is DeliveryStatus.FAILED
    assert state.message_status(elsewhere) is DeliveryStatus.PENDING
    assert state.fetch_messages(node_id) == []


def test_mark_node_offline(state: LinkState, run: RunInfo, node_id: int):
    (message_id,) = state.store_messages([instruction(run.run_id, node_id)])

    state.mark_node_offline(node_id)

    assert state.get_node(node_id).online is False
    assert state.message_status(message_id) is DeliveryStatus.FAILED
    with pytest.raises(UnknownNodeError):
        state.mark_node_offline(node_id + 1)


def test_list_nodes_filters_by_attributes(state: LinkState):
    a = state.register_node(attributes={"site": "a", "gpu": "yes"}).node_id
    b = state.register_node(attributes={"site": "b", "gpu": "yes"}).node_id
    state.register_node(attributes={"site": "a"})

    assert [n.node_id for n in state.list_nodes(attributes={"gpu": "yes"})] == sorted([a, b])
    assert [n.node_id for n in state.list_nodes(attributes={"gpu": "yes", "site": "a"})] == [a]
    assert state.list_nodes(attributes={"site": "c"}) == []


def test_list_nodes_is_in_id_order(state: LinkState):
    ids = [state.register_node().node_id for _ in range(5)]

    assert [n.node_id for n in state.list_nodes()] == sorted(ids)


def test_invalid_tolerance_is_refused(state: LinkState):
    with pytest.raises(ConfigError):
        state.mark_stale_nodes_offline(tolerance=-1)
