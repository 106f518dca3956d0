"""What a Flower ServerApp's rounds leave, as Corolla's run result: the final arrays and
the per-round metrics (``history.json``, ``metrics.png``, ``corolla pull``), whichever of
Flower's APIs ran the rounds.

Flower hands its results back to the ServerApp's own code, not to the runtime:
``Strategy.start`` returns a ``Result``; ``DefaultWorkflow`` leaves the model in the
context's state and the metrics in the ``LegacyContext``'s history; a ``server_fn`` app's
``run_fl`` returns a ``History`` that the ServerApp drops. :func:`flower_results` wraps
those three while a Flower ServerApp runs, so that the run's result is taken where Flower
makes it, and puts them back afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import flwr.server.compat.app as flower_compat
from flwr.common import parameters_to_ndarrays
from flwr.server import LegacyContext
from flwr.server.history import History as FlowerHistory
from flwr.server.workflow import DefaultWorkflow
from flwr.serverapp.strategy import Result, Strategy

from corolla.core import ArrayRecord
from corolla.server import History, RunResult

from ._records import array_record_from_flower

__all__ = ["flower_results"]

#: Where ``DefaultWorkflow`` keeps the model in the context's state.
LEGACY_PARAMETERS = "parameters"


@contextlib.contextmanager
def flower_results() -> Iterator[list[RunResult]]:
    """Collect, in order, the result of each Flower strategy, workflow or legacy server
    that runs in the block. Not reentrant: one Flower ServerApp runs at a time in a
    process."""
    results: list[RunResult] = []
    start, workflow = Strategy.start, DefaultWorkflow.__call__
    run_fl = flower_compat.__dict__["run_fl"]

    def started(self: Strategy, *args: Any, **kwargs: Any) -> Result:
        result = start(self, *args, **kwargs)
        results.append(_from_result(result))
        return result

    def worked(self: DefaultWorkflow, grid: Any, context: Any) -> None:
        workflow(self, grid, context)
        if isinstance(context, LegacyContext):
            results.append(_from_legacy_context(context))

    def ran(server: Any, config: Any) -> FlowerHistory:
        history: FlowerHistory = run_fl(server, config)
        arrays = ArrayRecord(
            {str(i): a for i, a in enumerate(parameters_to_ndarrays(server.parameters))}
        )
        results.append(RunResult(arrays, _from_flower_history(history)))
        return history

    Strategy.start = started  # type: ignore[method-assign]
    DefaultWorkflow.__call__ = worked  # type: ignore[method-assign]
    flower_compat.__dict__["run_fl"] = ran
    try:
        yield results
    finally:
        Strategy.start = start  # type: ignore[method-assign]
        DefaultWorkflow.__call__ = workflow  # type: ignore[method-assign]
        flower_compat.__dict__["run_fl"] = run_fl


def _from_result(result: Result) -> RunResult:
    history = History()
    for phase, rounds in (
        ("train", result.train_metrics_clientapp),
        ("evaluate", result.evaluate_metrics_clientapp),
        ("server", result.evaluate_metrics_serverapp),
    ):
        for number, metrics in rounds.items():
            history.record(int(number), phase, _plain(metrics))
    return RunResult(array_record_from_flower(result.arrays), history)


def _from_legacy_context(context: LegacyContext) -> RunResult:
    arrays = None
    if LEGACY_PARAMETERS in context.state.array_records:
        arrays = array_record_from_flower(context.state.array_records[LEGACY_PARAMETERS])
    return RunResult(arrays, _from_flower_history(context.history))


def _from_flower_history(flower: FlowerHistory) -> History:
    """Flower's legacy history by round: distributed fit metrics as ``train``, the
    distributed loss and metrics as ``evaluate``, the centralized ones as ``server``.
    Round 0 (the centralized evaluation of the initial model) is kept."""
    history = History()
    for number, loss in flower.losses_distributed:
        history.record(int(number), "evaluate", {"loss": loss})
    for number, loss in flower.losses_centralized:
        history.record(int(number), "server", {"loss": loss})
    for phase, table in (
        ("train", flower.metrics_distributed_fit),
        ("evaluate", flower.metrics_distributed),
        ("server", flower.metrics_centralized),
    ):
        for name, series in table.items():
            for number, value in series:
                history.record(int(number), phase, {name: value})
    return history


def _plain(metrics: Mapping[str, Any]) -> dict[str, Any]:
    return {
        name: list(value) if isinstance(value, list) else value for name, value in metrics.items()
    }
