"""LinkState conformance: calls from many threads at once, as a gRPC server makes them."""

from __future__ import annotations

import threading
from collections.abc import Callable

from corolla.core import Event
from corolla.state import LinkState, RunInfo, RunStatus, RunStatusError

from .doubles import instruction, reply

THREADS = 8


def _run_in_threads(target: Callable[[int], None], n: int = THREADS) -> None:
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def body(i: int) -> None:
        try:
            barrier.wait()
            target(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_concurrent_pullers_never_get_the_same_message(state: LinkState, run, node_id):
    ids = state.store_messages([instruction(run.run_id, node_id)] * 400)
    got: list[list[str]] = [[] for _ in range(THREADS)]

    def pull(i: int) -> None:
        while batch := state.fetch_messages(node_id, limit=3):
            got[i] += [m.metadata.message_id for m in batch]

    _run_in_threads(pull)

    everything = [message_id for batch in got for message_id in batch]
    assert len(everything) == len(set(everything))
    assert sorted(everything) == sorted(ids)


def test_concurrent_replies_and_retries_store_each_reply_once(state: LinkState, run, node_id):
    ids = state.store_messages([instruction(run.run_id, node_id)] * 100)
    requests = state.fetch_messages(node_id)

    def answer(i: int) -> None:  # every thread answers everything: seven retries each
        for request in requests[i::2] + requests:
            state.store_reply(reply(request, message_id=f"r-{request.metadata.message_id}"))

    _run_in_threads(answer)

    replies = state.get_replies(run.run_id, ids)
    assert sorted(r.metadata.reply_to_message_id for r in replies) == sorted(ids)


def test_racing_status_updates_let_exactly_one_win(state: LinkState, run: RunInfo):
    outcomes: list[str] = []
    targets = [RunStatus.FINISHED, RunStatus.FAILED, RunStatus.STOPPED, RunStatus.STOPPED]

    def update(i: int) -> None:
        try:
            state.update_run_status(run.run_id, targets[i])
            outcomes.append("won")
        except RunStatusError:
            outcomes.append("lost")

    _run_in_threads(update, n=len(targets))

    assert sorted(outcomes) == ["lost", "lost", "lost", "won"]


def test_concurrent_registrations_and_events(state: LinkState, run: RunInfo):
    def work(i: int) -> None:
        for k in range(10):
            state.register_node(attributes={"thread": str(i)})
            state.append_event(Event("tick", run_id=run.run_id, data={"t": i, "k": k}))

    _run_in_threads(work)

    assert len(state.list_nodes()) == THREADS * 10
    seqs = [e.seq for e in state.read_events(run.run_id)]
    assert len(seqs) == THREADS * 10 and seqs == sorted(set(seqs))
