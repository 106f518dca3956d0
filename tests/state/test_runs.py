"""LinkState conformance: runs and their status transitions."""

from __future__ import annotations

import itertools

import pytest

from corolla.core import ConfigError, ErrorCode
from corolla.state import (
    RUN_TRANSITIONS,
    DeliveryStatus,
    InvalidBlobHashError,
    LinkState,
    RunInfo,
    RunStatus,
    RunStatusError,
    UnknownRunError,
)

from .doubles import FakeClock, instruction


def test_create_run(state: LinkState, clock: FakeClock, bundle_hash: str):
    run = state.create_run(bundle_hash, {"lr": 0.1, "rounds": 3, "name": "x", "fast": True})

    assert 0 < run.run_id < 2**63
    assert run.status is RunStatus.PENDING
    assert run.bundle_hash == bundle_hash
    assert run.run_config == {"lr": 0.1, "rounds": 3, "name": "x", "fast": True}
    assert isinstance(run.run_config["fast"], bool)
    assert run.created_at == run.updated_at == clock.now
    assert (run.started_at, run.ended_at, run.error) == (None, None, None)
    assert state.get_run(run.run_id) == run


@pytest.mark.parametrize("bad", ["", "ab" * 31, "AB" * 32, "../" * 21 + "x", 42])
def test_create_run_rejects_a_malformed_bundle_hash(state: LinkState, bad):
    with pytest.raises(InvalidBlobHashError):
        state.create_run(bad)


def test_create_run_rejects_a_bad_config(state: LinkState, bundle_hash: str):
    with pytest.raises(ConfigError, match="run config"):
        state.create_run(bundle_hash, {"layers": [1, 2]})  # type: ignore[dict-item]


def test_get_unknown_run(state: LinkState):
    with pytest.raises(UnknownRunError, match="424242"):
        state.get_run(424242)


def test_a_run_goes_through_its_life(state: LinkState, clock: FakeClock, bundle_hash: str):
    run_id = state.create_run(bundle_hash).run_id
    clock.advance(1)
    state.update_run_status(run_id, RunStatus.STARTING)
    clock.advance(1)
    running = state.update_run_status(run_id, RunStatus.RUNNING)
    clock.advance(1)
    finished = state.update_run_status(run_id, RunStatus.FINISHED)

    assert running.started_at == clock.now - 1
    assert finished.status is RunStatus.FINISHED
    assert finished.started_at == running.started_at
    assert finished.ended_at == finished.updated_at == clock.now


def test_a_failed_run_keeps_its_error(state: LinkState, run: RunInfo):
    failed = state.update_run_status(run.run_id, RunStatus.FAILED, error="ServerApp crashed")

    assert (failed.status, failed.error) == (RunStatus.FAILED, "ServerApp crashed")


LEGAL = {(a, b) for a, targets in RUN_TRANSITIONS.items() for b in targets}
ILLEGAL = sorted(set(itertools.product(RunStatus, RunStatus)) - LEGAL)


def _walk_to(state: LinkState, run_id: int, status: RunStatus) -> None:
    path = {
        RunStatus.PENDING: [],
        RunStatus.STARTING: [RunStatus.STARTING],
        RunStatus.RUNNING: [RunStatus.STARTING, RunStatus.RUNNING],
        RunStatus.FINISHED: [RunStatus.STARTING, RunStatus.RUNNING, RunStatus.FINISHED],
        RunStatus.FAILED: [RunStatus.FAILED],
        RunStatus.STOPPED: [RunStatus.STOPPED],
    }[status]
    for step in path:
        state.update_run_status(run_id, step)


@pytest.mark.parametrize(("start", "target"), ILLEGAL, ids=lambda s: s.value)
def test_illegal_transitions_are_refused_and_change_nothing(
    state: LinkState, bundle_hash: str, start: RunStatus, target: RunStatus
):
    run_id = state.create_run(bundle_hash).run_id
    _walk_to(state, run_id, start)
    before = state.get_run(run_id)

    with pytest.raises(RunStatusError, match=f"is {start.value} and cannot become {target.value}"):
        state.update_run_status(run_id, target)

    assert state.get_run(run_id) == before


def test_the_terminal_statuses_are_ended():
    assert {s for s in RunStatus if s.ended} == {
        RunStatus.FINISHED,
        RunStatus.FAILED,
        RunStatus.STOPPED,
    }


def test_update_unknown_run_or_status(state: LinkState, run: RunInfo):
    with pytest.raises(UnknownRunError):
        state.update_run_status(run.run_id + 1, RunStatus.STOPPED)
    with pytest.raises(ConfigError, match="unknown run status"):
        state.update_run_status(run.run_id, "paused")  # type: ignore[arg-type]


def test_ending_a_run_answers_its_open_messages(state: LinkState, run: RunInfo, node_id: int):
    delivered, pending = state.store_messages([instruction(run.run_id, node_id)] * 2)
    state.fetch_messages(node_id, limit=1)

    state.update_run_status(run.run_id, RunStatus.STOPPED, error="stopped by alice")

    replies = state.get_replies(run.run_id, [delivered, pending])
    assert [r.error.code for r in replies if r.error] == [ErrorCode.MESSAGE_UNAVAILABLE] * 2
    assert state.message_status(pending) is DeliveryStatus.FAILED
    assert state.fetch_messages(node_id) == []
    with pytest.raises(RunStatusError, match="takes no messages"):
        state.store_messages([instruction(run.run_id, node_id)])


def test_list_runs_oldest_first_and_by_status(state: LinkState, clock: FakeClock, bundle_hash: str):
    first = state.create_run(bundle_hash).run_id
    clock.advance(1)
    second = state.create_run(bundle_hash).run_id
    state.update_run_status(second, RunStatus.STOPPED)

    assert [r.run_id for r in state.list_runs()] == [first, second]
    assert [r.run_id for r in state.list_runs(status=RunStatus.STOPPED)] == [second]
    assert state.list_runs(status=RunStatus.RUNNING) == []
