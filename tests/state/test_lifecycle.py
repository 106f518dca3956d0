"""LinkState conformance, stateful: random interleavings of sending, pulling, replying,
heartbeats, expiry and node loss keep the message invariants on every backend."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from corolla.state import DeliveryStatus, LinkState, ReplyRejectedError, RunStatus, StoredMessage

from .conftest import BACKENDS
from .doubles import FakeClock, digest, instruction, reply

ANSWERED = {DeliveryStatus.REPLIED, DeliveryStatus.EXPIRED, DeliveryStatus.FAILED}


class MessageLifecycle(RuleBasedStateMachine):
    backend = ""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.clock = FakeClock()
        self.state: LinkState = BACKENDS[self.backend](Path(self.tmp.name), self.clock)
        run_id = self.state.create_run(digest(b"bundle")).run_id
        self.state.update_run_status(run_id, RunStatus.STARTING)
        self.run_id = self.state.update_run_status(run_id, RunStatus.RUNNING).run_id
        self.nodes = [self.state.register_node(heartbeat_interval=10.0).node_id for _ in range(3)]
        self.sent: list[str] = []
        self.handed_out: list[str] = []
        self.delivered: dict[
            str, StoredMessage
        ] = {}  # message id -> the message as the node got it
        self.accepted: dict[str, str] = {}  # message id -> content hash of the node's reply

    def teardown(self) -> None:
        self.state.close()
        self.tmp.cleanup()

    @rule(node=st.integers(0, 2), count=st.integers(1, 3), ttl=st.sampled_from([5.0, 50.0]))
    def send(self, node: int, count: int, ttl: float) -> None:
        message = instruction(self.run_id, self.nodes[node], ttl=ttl)
        self.sent += self.state.store_messages([message] * count)

    @rule(node=st.integers(0, 2), limit=st.none() | st.integers(1, 2))
    def pull(self, node: int, limit: int | None) -> None:
        for message in self.state.fetch_messages(self.nodes[node], limit=limit):
            self.handed_out.append(message.metadata.message_id)
            self.delivered[message.metadata.message_id] = message

    @rule(data=st.data(), content=st.sampled_from([b"a", b"b"]))
    def answer(self, data: st.DataObject, content: bytes) -> None:
        if not self.delivered:
            return
        message_id = data.draw(st.sampled_from(sorted(self.delivered)))
        status = self.state.message_status(message_id)
        first_answer = status is DeliveryStatus.DELIVERED
        repeat = self.accepted.get(message_id) == digest(content)
        try:
            self.state.store_reply(reply(self.delivered[message_id], content_hash=digest(content)))
        except ReplyRejectedError:
            assert not repeat
            return
        assert first_answer or repeat
        self.accepted[message_id] = digest(content)

    @rule(seconds=st.sampled_from([1.0, 6.0, 30.0]))
    def wait(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(node=st.integers(0, 2))
    def heartbeat(self, node: int) -> None:
        self.state.heartbeat(self.nodes[node])

    @rule()
    def expire(self) -> None:
        self.state.expire_messages()

    @rule()
    def lose_silent_nodes(self) -> None:
        self.state.mark_stale_nodes_offline(tolerance=2.0)

    @invariant()
    def each_message_is_handed_out_at_most_once(self) -> None:
        assert len(self.handed_out) == len(set(self.handed_out))

    @invariant()
    def answered_messages_have_exactly_one_reply(self) -> None:
        replies = self.state.get_replies(self.run_id, self.sent)
        by_request = {r.metadata.reply_to_message_id: r for r in replies}
        assert len(by_request) == len(replies)
        for message_id in self.sent:
            status = self.state.message_status(message_id)
            assert (status in ANSWERED) == (message_id in by_request)
            if message_id in self.accepted:
                assert status is DeliveryStatus.REPLIED
                assert by_request[message_id].content_hash == self.accepted[message_id]


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_message_lifecycle(backend: str):
    machine = type(f"Lifecycle_{backend}", (MessageLifecycle,), {"backend": backend})

    run_state_machine_as_test(machine, settings=settings(max_examples=50, stateful_step_count=30))
