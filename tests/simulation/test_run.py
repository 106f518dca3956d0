"""End-to-end simulations on both backends: determinism, node state, failures."""

from __future__ import annotations

import numpy as np
import pytest

from corolla.core import ErrorCode, Event
from corolla.core._errors import AppLoadError, ConfigError
from corolla.project import ComponentRef
from corolla.simulation import run_simulation

from . import apps

CONFIGS = [("inline", None), ("process", 1), ("process", 2), ("process", 3)]


def _run(backend: str, workers: int | None, nodes: int = 23, **config: object):
    return run_simulation(
        apps.fedavg_server,
        apps.noisy,
        nodes,
        backend=backend,
        num_workers=workers,
        run_config={"seed": 7, **config},
    )


def _plus_one_twice() -> np.ndarray:
    w = apps.initial_arrays()["w"]
    return (w + np.float32(1)) + np.float32(1)


@pytest.fixture(scope="module")
def reference():
    return _run("inline", None)


@pytest.mark.e2e
@pytest.mark.parametrize(("backend", "workers"), CONFIGS)
def test_every_backend_and_worker_count_gives_identical_bits(backend, workers, reference):
    result = _run(backend, workers)

    assert result.arrays is not None and reference.arrays is not None
    for name in reference.arrays:
        a, b = result.arrays[name], reference.arrays[name]
        assert a.dtype == b.dtype
        assert a.tobytes() == b.tobytes()
    assert (
        result.history.to_dict()["rounds"][-1]["train"]
        == (reference.history.to_dict()["rounds"][-1]["train"])
    )


def test_rerun_with_same_seed_is_identical_and_other_seed_differs(reference):
    again = _run("inline", None)
    other = run_simulation(
        apps.fedavg_server, apps.noisy, 23, backend="inline", run_config={"seed": 8}
    )

    assert again.arrays == reference.arrays
    assert other.arrays != reference.arrays


def test_node_state_persists_across_rounds(reference):
    grid = reference.grid

    counts = [int(grid.state_of(n)["calls"]["n"]) for n in grid.node_ids()]

    assert counts == [3] * 23


def test_sampling_a_fraction_trains_that_many_nodes():
    result = _run("inline", None, nodes=40, **{"fraction-train": 0.25})

    assert [r.train_replies for r in result.history.rounds] == [10, 10, 10]


@pytest.mark.e2e
@pytest.mark.parametrize("backend", ["inline", "process"])
def test_a_raising_client_app_becomes_an_error_reply_and_the_round_goes_on(backend):
    events: list[Event] = []

    result = run_simulation(
        apps.faulty_server,
        apps.faulty,
        5,
        backend=backend,
        num_workers=2,
        run_config={"raise-on": 2},
        events=events.append,
    )

    errors = [e for e in events if e.kind == "reply.error"]
    assert [e.node_id for e in errors] == [2, 2]
    assert errors[0].data["code"] == ErrorCode.CLIENT_APP_RAISED
    assert "ValueError: node 2 cannot train" in errors[0].data["reason"]
    assert "Traceback" in errors[0].data["reason"]
    assert [(r.train_replies, r.train_failures) for r in result.history.rounds] == [(4, 1), (4, 1)]
    np.testing.assert_array_equal(result.arrays["w"], _plus_one_twice())


@pytest.mark.e2e
def test_a_worker_that_dies_fails_its_calls_and_is_replaced():
    events: list[Event] = []

    result = run_simulation(
        apps.faulty_server,
        apps.faulty,
        4,
        backend="process",
        num_workers=2,
        run_config={"exit-on": 3},
        events=events.append,
    )

    errors = [e for e in events if e.kind == "reply.error"]
    assert {e.data["code"] for e in errors} == {ErrorCode.WORKER_CRASHED}
    assert {e.node_id for e in errors} == {3}
    assert [r.train_replies for r in result.history.rounds] == [3, 3]


@pytest.mark.e2e
def test_a_hanging_client_app_times_out_without_hanging_the_run():
    events: list[Event] = []

    result = run_simulation(
        apps.faulty_server,
        apps.faulty,
        4,
        backend="process",
        num_workers=2,
        run_config={"sleep-on": 1, "timeout": 3},
        events=events.append,
    )

    codes = {e.data["code"] for e in events if e.kind == "reply.error"}
    assert codes == {ErrorCode.TIMEOUT}
    assert len(result.history.rounds) == 2
    assert all(r.train_replies >= 2 for r in result.history.rounds)


@pytest.mark.parametrize(("option", "node"), [("bad-shape-on", 2), ("nan-on", 4)])
def test_invalid_replies_are_rejected_not_folded(option, node):
    events: list[Event] = []

    result = run_simulation(
        apps.faulty_server,
        apps.faulty,
        4,
        backend="inline",
        run_config={option: node},
        events=events.append,
    )

    errors = [e for e in events if e.kind == "reply.error"]
    assert {e.data["code"] for e in errors} == {ErrorCode.INVALID_REPLY}
    assert {e.node_id for e in errors} == {node}
    np.testing.assert_array_equal(result.arrays["w"], _plus_one_twice())


def test_unknown_backend_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown simulation backend"):
        run_simulation(apps.fedavg_server, apps.noisy, 2, backend="ray-ish")


def test_an_unpicklable_client_app_names_the_fix():
    from corolla.client import ClientApp

    local = ClientApp()
    local.train()(lambda message, context: message)

    with pytest.raises(ConfigError, match="module level"):
        run_simulation(apps.fedavg_server, local, 2, backend="process", num_workers=1)


@pytest.mark.e2e
def test_a_client_app_that_fails_to_import_is_an_app_load_error():
    with pytest.raises(AppLoadError, match="no_such_module"):
        run_simulation(
            apps.fedavg_server,
            ComponentRef("no_such_module:app"),
            2,
            backend="process",
            num_workers=1,
        )


def test_fewer_nodes_than_the_strategy_needs_fails_at_once():
    from corolla.core._errors import NotEnoughNodesError

    with pytest.raises(NotEnoughNodesError, match="at least 2 nodes"):
        run_simulation(apps.fedavg_server, apps.noisy, 1, backend="inline")
