"""Strategy.start checkpoints each round on a grid that keeps checkpoints, and a strategy
restarted on that grid resumes after the last one with the same final arrays."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np
import pytest

from corolla.core import (
    ArrayRecord,
    ConfigError,
    ConfigRecord,
    Event,
    Message,
    MetricRecord,
    RecordDict,
)
from corolla.server import Grid, History, MemoryCheckpoints
from corolla.strategy import FedAdam, FedAvg, Strategy

NUM_ROUNDS = 4
NODES = list(range(1, 7))


class _Crash(Exception):
    """The ServerApp's process dies."""


class AnsweringGrid(Grid):
    """Six nodes answering at once, which can crash when a round starts sending; the
    checkpoint hooks are Grid's defaults (keep nothing)."""

    def __init__(self, crash_in_round: int | None = None) -> None:
        self.crash_in_round = crash_in_round
        self.events: list[Event] = []
        self._outbox: dict[str, Message] = {}
        self._counter = 0

    @property
    def run_id(self) -> int:
        return 7

    def node_ids(self) -> list[int]:
        return list(NODES)

    def send(self, messages: Iterable[Message]) -> list[str]:
        ids = []
        for message in messages:
            server_round = int(message.content["config"]["server-round"])
            if server_round == self.crash_in_round:
                raise _Crash(server_round)
            self._counter += 1
            stamped = message.with_metadata(run_id=7, message_id=f"m{self._counter}")
            self._outbox[stamped.metadata.message_id] = stamped
            ids.append(stamped.metadata.message_id)
        return ids

    def receive(
        self, message_ids: Iterable[str], timeout: float | None = None
    ) -> Iterator[Message]:
        for message_id in list(message_ids):
            yield _answer(self._outbox.pop(message_id))

    def emit(self, event: Event) -> None:
        self.events.append(event)


class CheckpointGrid(AnsweringGrid):
    """An :class:`AnsweringGrid` keeping the latest checkpoint in memory."""

    def __init__(self, crash_in_round: int | None = None) -> None:
        super().__init__(crash_in_round)
        self.kept = MemoryCheckpoints()

    @property
    def checkpoints(self) -> MemoryCheckpoints:
        return self.kept


def _answer(message: Message) -> Message:
    node = message.metadata.dst_node_id
    server_round = int(message.content["config"]["server-round"])
    metrics = MetricRecord({"num-examples": node, "score": float(node * server_round)})
    if message.metadata.message_type == "train":
        arrays = message.content["arrays"]
        update = {n: np.asarray(a) * 0.5 + node * 0.1 + server_round for n, a in arrays.items()}
        return Message(
            RecordDict({"arrays": ArrayRecord(update), "metrics": metrics}), reply_to=message
        )
    return Message(RecordDict({"metrics": metrics}), reply_to=message)


def _initial() -> ArrayRecord:
    return ArrayRecord({"w": np.arange(6, dtype=np.float64).reshape(2, 3), "b": np.ones(3)})


def _fedavg() -> Strategy:
    return FedAvg(fraction_train=0.5, fraction_evaluate=0.5, min_available_nodes=1, seed=11)


def _fedadam() -> Strategy:
    return FedAdam(fraction_train=0.5, fraction_evaluate=0.5, min_available_nodes=1, seed=11)


def _server_eval(server_round: int, arrays: ArrayRecord) -> MetricRecord:
    return MetricRecord({"norm": float(sum(np.abs(a).sum() for a in arrays.values()))})


@pytest.mark.parametrize("make", [_fedavg, _fedadam], ids=["fedavg", "fedadam"])
@pytest.mark.parametrize("crash_in_round", [1, 3, 4])
def test_a_restarted_strategy_resumes_after_the_last_checkpoint(
    make: Callable[[], Strategy], crash_in_round: int
) -> None:
    # Arrange: an uninterrupted run, and one whose ServerApp dies in round `crash_in_round`
    reference = make().start(CheckpointGrid(), _initial(), NUM_ROUNDS, evaluate_fn=_server_eval)
    grid = CheckpointGrid(crash_in_round=crash_in_round)
    with pytest.raises(_Crash):
        make().start(grid, _initial(), NUM_ROUNDS, evaluate_fn=_server_eval)
    saved = grid.kept.load()
    assert (saved[0] if saved else 0) == crash_in_round - 1

    # Act: a new strategy (as a restarted ServerApp builds it) on the same grid
    grid.crash_in_round = None
    grid.events.clear()
    resumed = make().start(grid, _initial(), NUM_ROUNDS, evaluate_fn=_server_eval)

    # Assert: same arrays, same history; only the missing rounds were run again
    assert list(resumed.arrays) == list(reference.arrays)
    for name in reference.arrays:
        np.testing.assert_array_equal(resumed.arrays[name], reference.arrays[name])
    assert [s.round for s in resumed.history.rounds] == list(range(NUM_ROUNDS + 1))
    for got, want in zip(resumed.history.rounds, reference.history.rounds, strict=True):
        assert (got.train, got.evaluate, got.server) == (want.train, want.evaluate, want.server)
    starts = [e.round for e in grid.events if e.kind == "round.start"]
    assert starts == list(range(crash_in_round, NUM_ROUNDS + 1))
    checkpoints = [e.round for e in grid.events if e.kind == "checkpoint"]
    assert checkpoints == starts
    assert grid.kept.load() is not None and grid.kept.load()[0] == NUM_ROUNDS


def test_the_checkpoint_holds_arrays_history_strategy_state_and_random_state() -> None:
    # Arrange: FedAdam after two rounds (optimizer moments, a sampling generator)
    grid = CheckpointGrid(crash_in_round=3)
    strategy = _fedadam()
    with pytest.raises(_Crash):
        strategy.start(grid, _initial(), NUM_ROUNDS)
    checkpoint = grid.kept.load()
    assert checkpoint is not None
    _, content = checkpoint

    # Act
    fresh = _fedadam()
    arrays, history = fresh.restore_checkpoint(content)

    # Assert
    assert set(content) >= {"arrays", "loop", "strategy/m", "strategy/v"}
    assert [s.round for s in history.rounds] == [1, 2]
    two_rounds = _fedadam()  # where the crashed strategy stood after round 2
    two_rounds.start(CheckpointGrid(), _initial(), 2)
    assert fresh.state_dict() == two_rounds.state_dict()
    assert isinstance(fresh, FedAdam) and isinstance(two_rounds, FedAdam)
    assert [g.bit_generator.state for g in fresh.generators()] == [
        g.bit_generator.state for g in two_rounds.generators()
    ]
    for name, array in content["arrays"].items():
        np.testing.assert_array_equal(arrays[name], array)


def test_a_grid_without_checkpoints_runs_as_before() -> None:
    # Arrange: the default hooks keep nothing
    grid = AnsweringGrid()

    # Act
    result = _fedavg().start(grid, _initial(), 2)

    # Assert: no checkpoint events, rounds from 1
    assert [e.round for e in grid.events if e.kind == "round.start"] == [1, 2]
    assert not [e for e in grid.events if e.kind in ("checkpoint", "run.resume")]
    assert result.history.rounds[-1].round == 2


def test_a_checkpoint_of_another_kind_is_refused() -> None:
    strategy = _fedavg()
    with pytest.raises(ConfigError):
        strategy.restore_checkpoint(RecordDict({"arrays": _initial()}))
    content = strategy.checkpoint(_initial(), History())
    loop = dict(content["loop"])
    loop["rng"] = "[]"
    with pytest.raises(ConfigError):
        strategy.restore_checkpoint(
            RecordDict({"arrays": content["arrays"], "loop": ConfigRecord(loop)})
        )
