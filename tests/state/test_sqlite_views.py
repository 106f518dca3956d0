"""SqliteStateViews reads what a SqliteLinkState wrote, through connections of its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from corolla.core import ConfigError, Error, ErrorCode, Event
from corolla.state import (
    RunStatus,
    SqliteLinkState,
    SqliteStateViews,
    StorageError,
    UnknownRunError,
)

from .doubles import FakeClock, instruction, reply


def _broke(node: int) -> Error:
    return Error(ErrorCode.CLIENT_APP_RAISED, f"node {node} broke")


def _rounds(state: SqliteLinkState, run_id: int, nodes: list[int], failing: dict[int, int]) -> None:
    """Two rounds of training on ``nodes``; in round r, node ``failing[r]`` answers with an
    error; a third round is sent and not answered."""
    for server_round in (1, 2, 3):
        sent = [instruction(run_id, n, group_id=str(server_round)) for n in nodes]
        state.store_messages(sent)
        stored = [m for n in nodes for m in state.fetch_messages(n)]
        if server_round == 3:
            continue
        answers = [
            reply(m, error=_broke(m.metadata.dst_node_id))
            if failing.get(server_round) == m.metadata.dst_node_id
            else reply(m)
            for m in stored
        ]
        state.store_replies(answers)
        state.append_event(
            Event(
                "round.end",
                run_id,
                server_round,
                data={"round": server_round, "server": {"loss": 1.0 / server_round}},
            )
        )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def written(
    tmp_path: Path, clock: FakeClock
) -> Iterator[tuple[SqliteLinkState, SqliteStateViews, list[int], int]]:
    state = SqliteLinkState(tmp_path / "state.db", clock=clock)
    nodes = sorted(state.register_node().node_id for _ in range(4))
    run = state.create_run("0" * 64, {"lr": 0.1})
    state.append_event(Event("run.submit", run.run_id, data={"app": "quickstart", "by": "ada"}))
    state.update_run_status(run.run_id, RunStatus.STARTING)
    state.update_run_status(run.run_id, RunStatus.RUNNING)
    state.append_event(Event("round.start", run.run_id, 1, data={"num_rounds": 3}))
    _rounds(state, run.run_id, nodes, {1: nodes[0], 2: nodes[2]})
    views = SqliteStateViews(tmp_path / "state.db")
    yield state, views, nodes, run.run_id
    views.close()
    state.close()


def test_a_run_summary_names_its_app_submitter_and_last_round(written):
    _, views, _, run_id = written

    summary = views.run(run_id)

    assert (summary.app, summary.submitted_by) == ("quickstart", "ada")
    assert (summary.rounds_done, summary.num_rounds) == (2, 3)
    assert summary.last_round["server"] == {"loss": 0.5}
    assert summary.run.run_config == {"lr": 0.1}


def test_runs_are_paged_filtered_and_sorted(written, clock):
    state, views, _, first = written
    clock.advance(1.0)
    second = state.create_run("1" * 64).run_id
    state.append_event(Event("run.submit", second, data={"app": "other", "by": "bob"}))

    newest, total = views.runs(limit=1)
    by_app, matching = views.runs(text="BOB")
    pending, _ = views.runs(status=RunStatus.PENDING)
    oldest, _ = views.runs(sort="created", descending=False, limit=1)
    by_id, _ = views.runs(sort="run_id", descending=False)

    assert total == 2 and [s.run.run_id for s in newest] == [second]
    assert matching == 1 and by_app[0].app == "other"
    assert [s.run.run_id for s in pending] == [second]
    assert [s.run.run_id for s in oldest] == [first]
    assert [s.run.run_id for s in by_id] == sorted([first, second])


def test_the_participation_map_counts_each_nodes_outcome_per_round(written):
    _, views, nodes, run_id = written

    one_per_node = views.participation(run_id)
    banded = views.participation(run_id, max_rows=2)

    assert one_per_node.rounds == ["1", "2", "3"]
    assert [b.first_node for b in one_per_node.bands] == nodes
    assert one_per_node.cells[0] == [(0, 1, 0), (1, 0, 0), (0, 0, 1)]
    assert one_per_node.cells[2] == [(1, 0, 0), (0, 1, 0), (0, 0, 1)]
    assert [(b.first_node, b.last_node, b.nodes) for b in banded.bands] == [
        (nodes[0], nodes[1], 2),
        (nodes[2], nodes[3], 2),
    ]
    assert banded.cells[0] == [(1, 1, 0), (2, 0, 0), (0, 0, 2)]


def test_failures_carry_the_nodes_error_text(written):
    _, views, nodes, run_id = written

    failures = views.failures(run_id, round="2")
    none = views.failures(run_id, round="1", first_node=nodes[1])

    assert [(f.node_id, f.reason) for f in failures] == [(nodes[2], f"node {nodes[2]} broke")]
    assert none == []


def test_rounds_and_events_come_in_order(written):
    _, views, _, run_id = written

    rounds = views.rounds(run_id)
    events = views.events(run_id)
    tail = views.events(run_id, before=events[-1].seq, limit=1)

    assert [r["round"] for r in rounds] == [1, 2]
    assert [e.event.kind for e in events][:2] == ["run.submit", "round.start"]
    assert tail == [events[-2]]


def test_nodes_count_the_runs_they_served_and_their_errors(written):
    state, views, nodes, _ = written
    state.mark_node_offline(nodes[3])

    page, total = views.nodes(limit=2)
    offline, _ = views.nodes(online=False)

    assert total == 4
    last, _ = views.nodes(offset=3)

    assert total == 4
    assert [(s.node.node_id, s.runs_served, s.errors) for s in page] == [
        (nodes[0], 1, 1),
        (nodes[1], 1, 0),
    ]
    # Round 3's message, unanswered, was answered by the link as the node went offline.
    assert [(s.node.node_id, s.errors, s.node.online) for s in last] == [(nodes[3], 1, False)]
    assert [s.node.node_id for s in offline] == [nodes[3]]


def test_totals_change_with_what_the_link_writes(written):
    state, views, _, run_id = written
    before = views.totals()

    state.append_event(Event("log", run_id, data={"line": "hi"}))
    after = views.totals()

    assert after.last_event == before.last_event + 1
    assert (after.nodes, after.nodes_online, after.runs) == (4, 4, {"running": 1})


def test_bad_requests_are_refused_with_what_to_do(written):
    _, views, _, run_id = written

    with pytest.raises(UnknownRunError, match="no run 999"):
        views.run(999)
    with pytest.raises(ConfigError, match="cannot sort runs by 'size'"):
        views.runs(sort="size")
    with pytest.raises(ConfigError, match="from 1 to 1000"):
        views.runs(limit=0)
    with pytest.raises(ConfigError, match="unknown phase"):
        views.participation(run_id, phase="fit")


def test_views_need_an_existing_database_and_refuse_reads_once_closed(tmp_path, written):
    _, views, _, _ = written

    with pytest.raises(StorageError, match="start the link first"):
        SqliteStateViews(tmp_path / "missing.db")
    views.close()
    with pytest.raises(StorageError, match="closed"):
        views.totals()
