"""run_simulation: a ServerApp and a ClientApp over N virtual nodes, on one machine."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

from ..core import ArrayRecord, ConfigError, Context, Event, EventSink, RecordDict, UserConfigValue
from ..execution import Executor, InlineExecutor, ProcessExecutor
from ..project import ComponentRef
from ..server import History, ServerApp
from ..telemetry import Tracing
from ..tuning import array_pages_for_this_machine, quiet_garbage_collector_while
from ._grid import SimulationGrid

__all__ = ["Backend", "SimulationResult", "make_executor", "run_simulation"]

Backend = Literal["inline", "process"]
BACKENDS = ("inline", "process")


@dataclasses.dataclass
class SimulationResult:
    """What a simulation left: final arrays and history (when the ServerApp used a
    strategy), timings, and the grid (for node states)."""

    arrays: ArrayRecord | None
    history: History | None
    startup_s: float
    total_s: float
    grid: SimulationGrid


def make_executor(
    backend: str,
    client_app: ComponentRef | Callable[..., Any],
    *,
    run_id: int = 1,
    run_config: Mapping[str, UserConfigValue] | None = None,
    num_workers: int | None = None,
) -> Executor:
    """Build the executor of a backend.

    Raises
    ------
    ConfigError
        If the backend is unknown.
    """
    if backend == "inline":
        app = client_app.load() if isinstance(client_app, ComponentRef) else client_app
        return InlineExecutor(app, run_id, run_config)
    if backend == "process":
        return ProcessExecutor(client_app, run_id, run_config, num_workers)
    raise ConfigError(f"unknown simulation backend {backend!r}; choose one of {BACKENDS}")


def run_simulation(
    server_app: ServerApp | ComponentRef,
    client_app: Callable[..., Any] | ComponentRef,
    num_nodes: int,
    *,
    backend: str = "process",
    num_workers: int | None = None,
    run_config: Mapping[str, UserConfigValue] | None = None,
    events: EventSink | None = None,
    run_id: int = 1,
    node_attributes: Callable[[int, int], Mapping[str, UserConfigValue]] | None = None,
    tracing: Tracing | None = None,
) -> SimulationResult:
    """Run ``server_app`` against ``num_nodes`` virtual nodes running ``client_app``.

    The ServerApp runs in this process; ClientApp calls run on the chosen backend:
    ``inline`` (this process, for debugging) or ``process`` (worker processes, one per
    core by default). ``node_attributes(partition_id, num_nodes)`` gives each virtual node
    attributes that selection policies can read (see :class:`SimulationGrid`).

    With ``tracing`` (by default, what the environment configures: see
    :mod:`corolla.telemetry`), each round is a trace with a span per ClientApp call.

    On a virtual machine that reports free pages to its host, NumPy's large arrays get
    small pages while the simulation runs, in this process and the workers (they fault in
    several times faster there; ``NUMPY_MADVISE_HUGEPAGE`` set in the environment wins).

    Raises
    ------
    ConfigError
        For an unknown backend, fewer than one node, or an unpicklable ClientApp.
    AppLoadError
        If an app cannot be loaded.
    MissingExtraError
        If the environment turns tracing on and OpenTelemetry is not installed.
    """
    started = time.perf_counter()
    config = dict(run_config or {})

    def sink(event: Event) -> None:
        if events is not None:
            events(event)

    server = server_app.load() if isinstance(server_app, ComponentRef) else server_app
    if not callable(server):
        raise ConfigError(f"the ServerApp {server_app!r} is not callable")
    own_tracing = tracing is None
    if tracing is None:
        tracing = Tracing.from_environment("corolla-simulation")
    with (
        _shut_down_after(tracing if own_tracing else None),
        array_pages_for_this_machine(),
        make_executor(
            backend, client_app, run_id=run_id, run_config=config, num_workers=num_workers
        ) as executor,
    ):
        grid = SimulationGrid(
            executor,
            num_nodes,
            run_id=run_id,
            events=sink,
            node_attributes=node_attributes,
            tracing=tracing,
        )
        startup = time.perf_counter() - started
        sink(Event("run.start", run_id, data={"num_nodes": num_nodes, "backend": backend}))
        with quiet_garbage_collector_while():
            server(grid, Context(run_id, 0, {}, config, RecordDict()))
        sink(Event("run.end", run_id))
    return SimulationResult(
        grid.result.arrays,
        grid.result.history,
        startup,
        time.perf_counter() - started,
        grid,
    )


@contextlib.contextmanager
def _shut_down_after(tracing: Tracing | None) -> Iterator[None]:
    """Export what ``tracing`` holds when the block ends (None: nothing to do)."""
    try:
        yield
    finally:
        if tracing is not None:
            tracing.shutdown()
