"""Server side: the ServerApp, the Grid it talks to, aggregation and history."""

from ._aggregator import Aggregator
from ._checkpoints import CheckpointStore, MemoryCheckpoints
from ._grid import Grid, Reduction, fold, fold_reply, rejected_reply
from ._history import History, RoundSummary
from ._node_order import node_order
from ._result import RunResult
from ._server_app import MainFunction, ServerApp

__all__ = [
    "Aggregator",
    "CheckpointStore",
    "Grid",
    "History",
    "MainFunction",
    "MemoryCheckpoints",
    "Reduction",
    "RoundSummary",
    "RunResult",
    "ServerApp",
    "fold",
    "fold_reply",
    "node_order",
    "rejected_reply",
]
