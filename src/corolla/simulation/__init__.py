"""Simulation: many virtual nodes on one machine, behind the same Grid a deployment uses."""

from ._executor import Call, Executor, InlineExecutor, Task, TaskResult, execute_task
from ._grid import SimulationGrid, default_node_config, split_blocks
from ._process import ProcessExecutor
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
