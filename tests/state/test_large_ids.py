"""LinkState conformance: ids SQLite cannot hold (the wire's are uint64) name nothing.

SQLite's integers are signed 64-bit, so an id of 2**63 or more (or below -2**63) cannot
name a stored node, run or message: every method answers as for an unknown id, never
with an ``OverflowError`` from the driver.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corolla.core import ConfigError, Error, Event, MessageError
from corolla.state import (
    LinkState,
    NodeIdentity,
    RunInfo,
    RunStatus,
    StoredMessage,
    UnknownMessageError,
    UnknownNodeError,
    UnknownRunError,
)

from .doubles import digest, instruction, reply

#: Ints outside SQLite's signed 64-bit range: the uint64 ids from 2**63 on, and below.
beyond_int64 = st.integers(min_value=2**63, max_value=2**64 - 1) | st.integers(
    min_value=-(2**64), max_value=-(2**63) - 1
)

# Nothing is stored by these calls, so one state serves every example.
examples = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

BLOB = digest(b"checkpoint")

#: Each method taking a node id, called with ``node_id``.
NODE_CALLS: dict[str, Callable[[LinkState, int], Any]] = {
    "authenticate_node": lambda s, n: s.authenticate_node(n, "token"),
    "heartbeat": lambda s, n: s.heartbeat(n),
    "heartbeat with an interval": lambda s, n: s.heartbeat(n, 5.0),
    "mark_node_offline": lambda s, n: s.mark_node_offline(n),
    "get_node": lambda s, n: s.get_node(n),
    "fetch_messages": lambda s, n: s.fetch_messages(n),
    "register_node again": lambda s, n: s.register_node(identity=NodeIdentity(n, "token")),
}

#: Each method taking a run id, called with ``run_id``.
RUN_CALLS: dict[str, Callable[[LinkState, int], Any]] = {
    "get_run": lambda s, r: s.get_run(r),
    "update_run_status": lambda s, r: s.update_run_status(r, RunStatus.STARTING),
    "get_replies": lambda s, r: s.get_replies(r, ["m"]),
    "replies_since": lambda s, r: s.replies_since(r),
    "abandon_run_messages": lambda s, r: s.abandon_run_messages(r, "stopped"),
    "append_events": lambda s, r: s.append_events([Event("round.start", run_id=r)]),
    "read_events": lambda s, r: s.read_events(r),
    "run_contents": lambda s, r: list(s.run_contents(r)),
    "run_contents unreleased": lambda s, r: list(s.run_contents(r, released=False)),
    "release_messages": lambda s, r: s.release_messages(r, ["m"]),
    "drop_released_contents": lambda s, r: s.drop_released_contents(r, ["m"]),
    "clear_reply_contents": lambda s, r: s.clear_reply_contents(r),
    "save_checkpoint": lambda s, r: s.save_checkpoint(r, 1, BLOB),
    "load_checkpoint": lambda s, r: s.load_checkpoint(r),
}


@pytest.mark.parametrize("call", NODE_CALLS.values(), ids=NODE_CALLS.keys())
@examples
@given(node_id=beyond_int64)
def test_a_node_id_beyond_int64_is_an_unknown_node(
    state: LinkState, call: Callable[[LinkState, int], Any], node_id: int
):
    with pytest.raises(UnknownNodeError, match=str(node_id)):
        call(state, node_id)


@pytest.mark.parametrize("call", RUN_CALLS.values(), ids=RUN_CALLS.keys())
@examples
@given(run_id=beyond_int64)
def test_a_run_id_beyond_int64_is_an_unknown_run(
    state: LinkState, call: Callable[[LinkState, int], Any], run_id: int
):
    with pytest.raises(UnknownRunError, match=str(run_id)):
        call(state, run_id)


@examples
@given(node_id=beyond_int64)
def test_fetching_for_many_nodes_answers_each_id_beyond_int64_as_unknown(
    state: LinkState, run: RunInfo, node_id: int
):
    known = state.register_node().node_id
    state.store_messages([instruction(run.run_id, known)])

    fetched = state.fetch_messages_many([known, node_id])

    assert isinstance(fetched[node_id], UnknownNodeError)
    assert len(fetched[known]) == 1  # type: ignore[arg-type]


@examples
@given(node_id=beyond_int64)
def test_messages_from_or_to_a_node_id_beyond_int64_are_refused(
    state: LinkState, run: RunInfo, node_id: int
):
    known = state.register_node().node_id
    to_it = instruction(run.run_id, node_id)
    plain = instruction(run.run_id, known)
    from_it = StoredMessage(
        dataclasses.replace(plain.metadata, src_node_id=node_id), content_hash=plain.content_hash
    )

    with pytest.raises(UnknownNodeError):
        state.store_messages([to_it])
    with pytest.raises(UnknownNodeError):
        state.store_messages([from_it])
    with pytest.raises(UnknownNodeError):
        state.append_events([Event("reply", run_id=run.run_id, node_id=node_id)])
    assert state.fetch_messages(known) == []  # nothing of the refused batches was stored


@examples
@given(run_id=beyond_int64)
def test_messages_for_a_run_id_beyond_int64_are_refused(
    state: LinkState, node_id: int, run_id: int
):
    with pytest.raises(UnknownRunError):
        state.store_messages([instruction(run_id, node_id)])


@examples
@given(run_id=beyond_int64)
def test_a_reply_naming_a_run_id_beyond_int64_answers_an_unknown_message(
    state: LinkState, run: RunInfo, node_id: int, run_id: int
):
    (message_id,) = state.store_messages([instruction(run.run_id, node_id)])
    (delivered,) = state.fetch_messages(node_id)
    stray = reply(delivered, run_id=run_id)

    with pytest.raises(UnknownMessageError):
        state.store_reply(stray)
    (refused,) = state.store_replies([stray])

    assert isinstance(refused, UnknownMessageError)
    assert state.get_replies(run.run_id, [message_id]) == []


@examples
@given(code=beyond_int64)
def test_an_error_reply_whose_code_is_beyond_int64_is_refused(
    state: LinkState, run: RunInfo, node_id: int, code: int
):
    state.store_messages([instruction(run.run_id, node_id)])
    (delivered,) = state.fetch_messages(node_id)

    with pytest.raises(MessageError, match="error code"):
        state.store_reply(reply(delivered, error=Error(code, "odd")))


@examples
@given(position=st.integers(min_value=2**63, max_value=2**64 - 1))
def test_cursors_and_limits_beyond_int64_are_past_everything(
    state: LinkState, run: RunInfo, position: int
):
    state.append_events([Event("round.start", run_id=run.run_id, round=1)])

    assert state.replies_since(run.run_id, position) == ([], position)
    assert state.read_events(run.run_id, after=position) == []
    assert state.read_events(run.run_id, limit=position) == state.read_events(run.run_id)


@examples
@given(number=beyond_int64)
def test_a_round_beyond_int64_is_a_config_error(state: LinkState, run: RunInfo, number: int):
    with pytest.raises(ConfigError, match="round"):
        state.save_checkpoint(run.run_id, number, BLOB)
    with pytest.raises(ConfigError, match="round"):
        state.append_events([Event("round.start", run_id=run.run_id, round=number)])
