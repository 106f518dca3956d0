"""Strategy: the round loop every federated algorithm shares, over four hooks."""

from __future__ import annotations

import abc
import dataclasses
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..core import (
    ArrayRecord,
    ConfigError,
    ConfigRecord,
    ErrorCode,
    Event,
    ExecutionError,
    Message,
    MetricRecord,
    RecordDict,
)
from ..server import Aggregator, Grid, History, Reduction, RunResult

__all__ = ["EvaluateFn", "RoundPlan", "StopRun", "Strategy", "WrappedStrategy"]

#: Names of the checkpoint's records; the strategy's own state follows under a prefix.
_CHECKPOINT_ARRAYS = "arrays"
_CHECKPOINT_LOOP = "loop"
_CHECKPOINT_STATE_PREFIX = "strategy/"

#: Server-side evaluation: ``(server_round, arrays) -> metrics or None``.
EvaluateFn = Callable[[int, ArrayRecord], "Mapping[str, Any] | MetricRecord | None"]


@dataclasses.dataclass
class RoundPlan:
    """The messages of one phase of a round and the aggregator their replies fold into."""

    messages: list[Message]
    aggregator: Aggregator


class StopRun(Exception):
    """Raised by :meth:`Strategy.configure_train` to end the run cleanly before the round
    it configures (e.g. a privacy budget that round would exceed).

    The loop emits a ``run.stop`` event with ``reason`` and ``data``, does not record the
    round, and ends the run with the arrays of the last round run.

    Parameters
    ----------
    reason
        Why the run stops, in one sentence.
    data
        What a reader of the run's events needs to know (JSON-able values).
    """

    def __init__(self, reason: str, data: Mapping[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.data = dict(data or {})


class Strategy(abc.ABC):
    """A federated algorithm, as four hooks run by the fixed loop of :meth:`start`.

    Each round: ``configure_train`` picks nodes and builds messages, the grid folds the
    replies into the plan's aggregator, ``aggregate_train`` turns it into new arrays; then
    ``configure_evaluate`` / ``aggregate_evaluate`` do the same for federated evaluation.
    """

    @abc.abstractmethod
    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> RoundPlan:
        """Messages for the training phase of ``server_round``."""

    @abc.abstractmethod
    def aggregate_train(
        self, server_round: int, reduction: Reduction[Any], arrays: ArrayRecord
    ) -> tuple[ArrayRecord, MetricRecord]:
        """New global arrays and aggregated training metrics."""

    @abc.abstractmethod
    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> RoundPlan:
        """Messages for the evaluation phase of ``server_round`` (may be empty)."""

    @abc.abstractmethod
    def aggregate_evaluate(self, server_round: int, reduction: Reduction[Any]) -> MetricRecord:
        """Aggregated evaluation metrics."""

    def server_metrics(self, server_round: int, grid: Grid) -> MetricRecord:
        """Metrics the strategy itself measures at the end of a round (e.g. the privacy
        spent so far), recorded in the history's ``server`` phase of the round before its
        ``round.end`` event; it may emit events of its own on ``grid``. None by default."""
        return MetricRecord()

    def generators(self) -> list[np.random.Generator]:
        """The random generators the strategy draws from (node sampling), whose states a
        checkpoint saves and restores, in a fixed order; none by default, so a strategy
        that draws at random returns its generators here."""
        return []

    def state_dict(self) -> RecordDict:
        """The strategy's own state across rounds (optimizer moments, control variates),
        for a checkpoint; empty for strategies that keep none."""
        return RecordDict()

    def load_state_dict(self, state: RecordDict) -> None:
        """Restore what :meth:`state_dict` returned.

        Raises
        ------
        ConfigError
            If ``state`` holds records this strategy does not keep.
        """
        if len(state):
            raise ConfigError(f"{type(self).__name__} keeps no state, got {list(state)}")

    def start(
        self,
        grid: Grid,
        initial_arrays: ArrayRecord,
        num_rounds: int = 3,
        *,
        timeout: float | None = None,
        train_config: Mapping[str, Any] | ConfigRecord | None = None,
        evaluate_config: Mapping[str, Any] | ConfigRecord | None = None,
        evaluate_fn: EvaluateFn | None = None,
    ) -> RunResult:
        """Run ``num_rounds`` rounds of training and evaluation.

        Parameters
        ----------
        timeout
            Seconds to wait for the replies of each phase; None waits for all.
        train_config, evaluate_config
            Sent to nodes with every message (``server-round`` is added).
        evaluate_fn
            Server-side evaluation of the global arrays, called before the first round
            (round 0) and after each round.

        On a grid that keeps checkpoints (:attr:`Grid.checkpoints`, as in deployment),
        the end of each round is checkpointed (:meth:`checkpoint`: arrays, history,
        :meth:`state_dict`, random state), and a run that has a checkpoint (its ServerApp
        restarted after a crash) goes on from the round after it, as if it had never
        stopped. The final arrays and the history are reported to the grid
        (:meth:`Grid.report_result`) and returned.

        Raises
        ------
        ExecutionError
            If every training reply of the run failed (the ClientApp raised everywhere,
            no node answered in time...): the run did not train, and its initial arrays
            are no result. The error names the first failure.

        A :class:`StopRun` raised by :meth:`configure_train` ends the run before that
        round, as if it had been the last (see :class:`StopRun`).
        """
        history = History()
        arrays = initial_arrays
        run_id = grid.run_id
        first_round = 1
        checkpoints = grid.checkpoints
        checkpoint = None if checkpoints is None else checkpoints.load()
        if checkpoint is not None:
            # A restarted ServerApp: go on after the last round the checkpoint ends.
            last_round, content = checkpoint
            arrays, history = self.restore_checkpoint(content)
            first_round = last_round + 1
            grid.emit(Event("run.resume", run_id, last_round, data={"next_round": first_round}))
        elif evaluate_fn is not None:
            self._server_evaluate(grid, history, evaluate_fn, 0, arrays)
        first_failure: list[str] = []
        for server_round in range(first_round, num_rounds + 1):
            started = time.perf_counter()
            grid.emit(Event("round.start", run_id, server_round, data={"num_rounds": num_rounds}))
            # Each phase runs in its own frame, so its aggregator is freed when the phase
            # ends, before the next one allocates: O(model) server memory, reused.
            try:
                arrays = self._train_phase(
                    grid, history, server_round, arrays, train_config, timeout, first_failure
                )
            except StopRun as stop:
                data = {"reason": stop.reason, **stop.data}
                grid.emit(Event("run.stop", run_id, server_round, data=data))
                break
            summary = history.round(server_round)
            self._evaluate_phase(grid, history, server_round, arrays, evaluate_config, timeout)
            if evaluate_fn is not None:
                self._server_evaluate(grid, history, evaluate_fn, server_round, arrays)
            measured = self.server_metrics(server_round, grid)
            if len(measured):
                history.record(server_round, "server", measured)
            summary.seconds = time.perf_counter() - started
            grid.emit(Event("round.end", run_id, server_round, data=summary.to_dict()))
            if checkpoints is not None:
                checkpoints.save(server_round, self.checkpoint(arrays, history))
                grid.emit(Event("checkpoint", run_id, server_round))
        _check_something_trained(history, first_failure)
        result = RunResult(arrays, history)
        grid.report_result(result)
        return result

    def checkpoint(self, arrays: ArrayRecord, history: History) -> RecordDict:
        """What a restarted run needs to go on where it stopped: the global arrays, the
        history, the strategy's :meth:`state_dict` and the state of its random generators."""
        loop = ConfigRecord(
            {
                "history": json.dumps(history.to_dict()),
                "rng": json.dumps(
                    [g.bit_generator.state for g in self.generators()], default=_jsonable
                ),
            }
        )
        records: dict[str, Any] = {_CHECKPOINT_ARRAYS: arrays, _CHECKPOINT_LOOP: loop}
        for key, record in self.state_dict().items():
            records[_CHECKPOINT_STATE_PREFIX + key] = record
        return RecordDict(records)

    def restore_checkpoint(self, content: RecordDict) -> tuple[ArrayRecord, History]:
        """Restore what :meth:`checkpoint` returned; return its arrays and history.

        Raises
        ------
        ConfigError
            If ``content`` is not a checkpoint of this strategy.
        """
        arrays = content.get(_CHECKPOINT_ARRAYS)
        loop = content.get(_CHECKPOINT_LOOP)
        if not isinstance(arrays, ArrayRecord) or not isinstance(loop, ConfigRecord):
            raise ConfigError(f"not a checkpoint: records {list(content)}")
        try:
            history = History.from_dict(json.loads(str(loop["history"])))
            states = json.loads(str(loop["rng"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"malformed checkpoint: {exc}") from exc
        generators = self.generators()
        if not isinstance(states, list) or len(states) != len(generators):
            raise ConfigError(
                f"the checkpoint's random states {str(states)[:80]} do not fit the "
                f"{len(generators)} generators of {type(self).__name__}"
            )
        state = RecordDict(
            (key[len(_CHECKPOINT_STATE_PREFIX) :], record)
            for key, record in content.items()
            if key.startswith(_CHECKPOINT_STATE_PREFIX)
        )
        self.load_state_dict(state)
        for generator, saved in zip(generators, states, strict=True):
            try:
                generator.bit_generator.state = saved
            except (TypeError, ValueError, KeyError) as exc:
                raise ConfigError(f"malformed random state in checkpoint: {exc}") from exc
        return arrays, history

    def _train_phase(
        self,
        grid: Grid,
        history: History,
        server_round: int,
        arrays: ArrayRecord,
        train_config: Mapping[str, Any] | ConfigRecord | None,
        timeout: float | None,
        first_failure: list[str],
    ) -> ArrayRecord:
        config = ConfigRecord(dict(train_config or {}) | {"server-round": server_round})
        plan = self.configure_train(server_round, arrays, config, grid)
        if not plan.messages:
            return arrays
        reduction = grid.send_and_reduce(plan.messages, plan.aggregator, timeout)
        del plan
        _report_failures(grid, server_round, "train", reduction)
        if not first_failure and reduction.num_failures:
            first_failure.append(_describe_failure(server_round, reduction))
        new_arrays, metrics = self.aggregate_train(server_round, reduction, arrays)
        history.record(server_round, "train", metrics)
        summary = history.round(server_round)
        summary.train_replies = reduction.num_replies
        summary.train_failures = reduction.num_failures
        return new_arrays

    def _evaluate_phase(
        self,
        grid: Grid,
        history: History,
        server_round: int,
        arrays: ArrayRecord,
        evaluate_config: Mapping[str, Any] | ConfigRecord | None,
        timeout: float | None,
    ) -> None:
        config = ConfigRecord(dict(evaluate_config or {}) | {"server-round": server_round})
        plan = self.configure_evaluate(server_round, arrays, config, grid)
        if not plan.messages:
            return
        reduction = grid.send_and_reduce(plan.messages, plan.aggregator, timeout)
        _report_failures(grid, server_round, "evaluate", reduction)
        history.record(server_round, "evaluate", self.aggregate_evaluate(server_round, reduction))
        summary = history.round(server_round)
        summary.evaluate_replies = reduction.num_replies
        summary.evaluate_failures = reduction.num_failures

    @staticmethod
    def _server_evaluate(
        grid: Grid,
        history: History,
        evaluate_fn: EvaluateFn,
        server_round: int,
        arrays: ArrayRecord,
    ) -> None:
        metrics = evaluate_fn(server_round, arrays)
        if metrics is not None:
            history.record(server_round, "server", MetricRecord(dict(metrics)))
            if server_round == 0:
                grid.emit(Event("round.end", grid.run_id, 0, data=history.round(0).to_dict()))


def _describe_failure(server_round: int, reduction: Reduction[Any]) -> str:
    """The first failure of a round's reduction, in one line."""
    if reduction.errors:
        error = reduction.errors[0]
        code = error.error.code
        try:
            name = ErrorCode(code).name
        except ValueError:  # a code from a newer peer
            name = str(code)
        reason = error.error.reason.strip().splitlines()[0] if error.error.reason else ""
        node = error.metadata.src_node_id
        return f"round {server_round}, node {node}: {name}: {reason}"
    return f"round {server_round}, node {reduction.missing[0]}: no reply in time"


def _check_something_trained(history: History, first_failure: list[str]) -> None:
    """Refuse a run in which training replies came, and every one failed.

    Raises
    ------
    ExecutionError
        Naming the number of failures and the first.
    """
    rounds = [r for r in history.rounds if r.train_replies or r.train_failures]
    failures = sum(r.train_failures for r in rounds)
    if rounds and failures and not any(r.train_replies for r in rounds):
        first = first_failure[0] if first_failure else "see the run's reply.error events"
        raise ExecutionError(
            f"every training reply of the run failed ({failures} over {len(rounds)} "
            f"rounds), so it trained nothing; the first: {first}"
        )


def _report_failures(grid: Grid, server_round: int, phase: str, reduction: Reduction[Any]) -> None:
    for error in reduction.errors:
        grid.emit(
            Event(
                "reply.error",
                grid.run_id,
                server_round,
                node_id=error.metadata.src_node_id,
                data={"phase": phase, "code": error.error.code, "reason": error.error.reason},
            )
        )
    for node_id in reduction.missing:
        grid.emit(
            Event(
                "reply.missing",
                grid.run_id,
                server_round,
                node_id=node_id,
                data={"phase": phase},
            )
        )


def _jsonable(value: object) -> object:
    # Some bit generators (MT19937) keep their state in an array.
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class WrappedStrategy(Strategy):
    """A strategy that adds to another: every hook is the wrapped strategy's until a
    subclass overrides it (central DP, secure aggregation).

    Parameters
    ----------
    strategy
        The strategy wrapped.
    """

    def __init__(self, strategy: Strategy) -> None:
        self.strategy = strategy

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> RoundPlan:
        return self.strategy.configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, reduction: Reduction[Any], arrays: ArrayRecord
    ) -> tuple[ArrayRecord, MetricRecord]:
        return self.strategy.aggregate_train(server_round, reduction, arrays)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> RoundPlan:
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, reduction: Reduction[Any]) -> MetricRecord:
        return self.strategy.aggregate_evaluate(server_round, reduction)

    def server_metrics(self, server_round: int, grid: Grid) -> MetricRecord:
        return self.strategy.server_metrics(server_round, grid)

    def generators(self) -> list[np.random.Generator]:
        return self.strategy.generators()

    def state_dict(self) -> RecordDict:
        return self.strategy.state_dict()

    def load_state_dict(self, state: RecordDict) -> None:
        self.strategy.load_state_dict(state)
