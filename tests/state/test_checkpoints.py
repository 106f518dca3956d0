"""LinkState conformance: the latest checkpoint of each run."""

from __future__ import annotations

import pytest

from corolla.core import ConfigError
from corolla.state import Checkpoint, InvalidBlobHashError, LinkState, RunInfo, UnknownRunError

from .doubles import FakeClock, digest


def test_a_run_starts_without_a_checkpoint(state: LinkState, run: RunInfo):
    assert state.load_checkpoint(run.run_id) is None


def test_saving_replaces_the_previous_checkpoint(state: LinkState, clock: FakeClock, run):
    state.save_checkpoint(run.run_id, 1, digest(b"round 1"))
    clock.advance(5)

    saved = state.save_checkpoint(run.run_id, 2, digest(b"round 2"))

    assert saved == Checkpoint(run.run_id, 2, digest(b"round 2"), clock.now)
    assert state.load_checkpoint(run.run_id) == saved


def test_a_resumed_run_may_save_the_same_round_again(state: LinkState, run: RunInfo):
    state.save_checkpoint(run.run_id, 3, digest(b"first try"))

    state.save_checkpoint(run.run_id, 3, digest(b"second try"))

    checkpoint = state.load_checkpoint(run.run_id)
    assert checkpoint is not None and checkpoint.blob_hash == digest(b"second try")


def test_an_older_round_is_refused(state: LinkState, run: RunInfo):
    state.save_checkpoint(run.run_id, 3, digest(b"3"))

    with pytest.raises(ConfigError, match="older"):
        state.save_checkpoint(run.run_id, 2, digest(b"2"))

    checkpoint = state.load_checkpoint(run.run_id)
    assert checkpoint is not None and checkpoint.round == 3


def test_checkpoints_of_runs_are_kept_apart(state: LinkState, run: RunInfo, bundle_hash: str):
    other = state.create_run(bundle_hash).run_id
    state.save_checkpoint(run.run_id, 1, digest(b"a"))

    assert state.load_checkpoint(other) is None


def test_invalid_checkpoints_are_refused(state: LinkState, run: RunInfo):
    with pytest.raises(UnknownRunError):
        state.save_checkpoint(run.run_id + 1, 1, digest(b"a"))
    with pytest.raises(UnknownRunError):
        state.load_checkpoint(run.run_id + 1)
    with pytest.raises(InvalidBlobHashError):
        state.save_checkpoint(run.run_id, 1, "../../etc/passwd")
    with pytest.raises(ConfigError, match="round"):
        state.save_checkpoint(run.run_id, -1, digest(b"a"))
