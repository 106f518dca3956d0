"""LinkState conformance: the event log of runs and of the link."""

from __future__ import annotations

import math

import numpy as np
import pytest

from corolla.core import ConfigError, Event
from corolla.state import LinkState, RunInfo, UnknownRunError


def test_events_get_increasing_sequence_numbers_and_read_back(state: LinkState, run: RunInfo):
    events = [
        Event("round.start", run_id=run.run_id, round=1, time=10.0),
        Event("reply", run_id=run.run_id, round=1, node_id=5, data={"n": 3}, time=11.0),
        Event("round.end", run_id=run.run_id, round=1, data={"loss": 0.5}, time=12.0),
    ]

    seqs = state.append_events(events)

    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    entries = state.read_events(run.run_id)
    assert [e.seq for e in entries] == seqs
    assert [e.event for e in entries] == events


def test_read_after_a_sequence_number_follows_the_log(state: LinkState, run: RunInfo):
    first = state.append_event(Event("round.start", run_id=run.run_id, round=1))
    second = state.append_event(Event("round.end", run_id=run.run_id, round=1))

    assert [e.seq for e in state.read_events(run.run_id, after=first)] == [second]
    assert state.read_events(run.run_id, after=second) == []
    third = state.append_event(Event("run.end", run_id=run.run_id))
    assert [e.seq for e in state.read_events(run.run_id, after=second)] == [third]
    assert [e.seq for e in state.read_events(run.run_id, limit=2)] == [first, second]


def test_events_of_runs_are_kept_apart(state: LinkState, run: RunInfo, bundle_hash: str):
    other = state.create_run(bundle_hash).run_id
    state.append_events([Event("a", run_id=run.run_id), Event("b", run_id=other)])
    link = state.append_event(Event("node.online", node_id=3))

    assert [e.event.kind for e in state.read_events(run.run_id)] == ["a"]
    assert [e.event.kind for e in state.read_events(other)] == ["b"]
    assert [e.seq for e in state.read_events(0)] == [link]


def test_event_data_keeps_nan_and_numpy_scalars(state: LinkState, run: RunInfo):
    state.append_event(
        Event("metric", run_id=run.run_id, data={"loss": float("nan"), "n": np.int64(3)})
    )

    (entry,) = state.read_events(run.run_id)
    assert math.isnan(entry.event.data["loss"])
    assert entry.event.data["n"] == 3


def test_an_event_of_an_unknown_run_is_refused_and_nothing_is_stored(state: LinkState, run):
    with pytest.raises(UnknownRunError, match="31337"):
        state.append_events([Event("a", run_id=run.run_id), Event("b", run_id=31337)])

    assert state.read_events(run.run_id) == []
    with pytest.raises(UnknownRunError):
        state.read_events(31337)


def test_unstorable_events_are_refused(state: LinkState, run: RunInfo):
    with pytest.raises(ConfigError, match="JSON"):
        state.append_event(Event("a", run_id=run.run_id, data={"x": object()}))
    with pytest.raises(ConfigError, match="kind"):
        state.append_event(Event("", run_id=run.run_id))
    with pytest.raises(ConfigError, match="limit"):
        state.read_events(run.run_id, limit=0)
