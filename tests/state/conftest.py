"""Fixtures of the LinkState conformance suite: every test taking ``state`` runs against
every backend in :data:`BACKENDS`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from corolla.state import LinkState, RunInfo, RunStatus, SqliteLinkState

from .doubles import FakeClock, digest

#: name -> factory(tmp_path, clock). A new backend (PostgreSQL) adds one entry, skipping
#: itself with ``pytest.skip`` when its server is not configured, and passes the same suite.
BACKENDS: dict[str, Callable[[Path, FakeClock], LinkState]] = {
    "sqlite-memory": lambda tmp_path, clock: SqliteLinkState(":memory:", clock=clock),
    "sqlite-file": lambda tmp_path, clock: SqliteLinkState(tmp_path / "state.db", clock=clock),
}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=sorted(BACKENDS))
def state(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[LinkState]:
    store = BACKENDS[request.param](tmp_path, clock)
    yield store
    store.close()


@pytest.fixture
def bundle_hash() -> str:
    return digest(b"app bundle")


@pytest.fixture
def run(state: LinkState, bundle_hash: str) -> RunInfo:
    """A run whose ServerApp is running, so it may send messages."""
    created = state.create_run(bundle_hash, {"num-rounds": 3})
    state.update_run_status(created.run_id, RunStatus.STARTING)
    return state.update_run_status(created.run_id, RunStatus.RUNNING)


@pytest.fixture
def node_id(state: LinkState) -> int:
    return state.register_node(attributes={"site": "a"}, heartbeat_interval=10.0).node_id
