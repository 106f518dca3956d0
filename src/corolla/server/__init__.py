"""Server side: the ServerApp, the Grid it talks to, aggregation and history."""

from ._aggregator import Aggregator
from ._grid import Grid, Reduction, fold_reply, rejected_reply
from ._history import History, RoundSummary
from ._server_app import MainFunction, ServerApp

__all__ = [
    "Aggregator",
    "Grid",
    "History",
    "MainFunction",
    "Reduction",
    "RoundSummary",
    "ServerApp",
    "fold_reply",
    "rejected_reply",
]
