"""Simulation: many virtual nodes on one machine, behind the same Grid a deployment uses.

The executors that run the virtual nodes' calls live in :mod:`corolla.execution` (a
deployment's node uses them too) and are re-exported here.
"""

from ..execution import (
    Call,
    Executor,
    InlineExecutor,
    ProcessExecutor,
    Task,
    TaskResult,
    execute_task,
)
from ._grid import SimulationGrid, default_node_config, split_blocks
from ._run import Backend, SimulationResult, make_executor, run_simulation

__all__ = [
    "Backend",
    "Call",
    "Executor",
    "InlineExecutor",
    "ProcessExecutor",
    "SimulationGrid",
    "SimulationResult",
    "Task",
    "TaskResult",
    "default_node_config",
    "execute_task",
    "make_executor",
    "run_simulation",
    "split_blocks",
]
