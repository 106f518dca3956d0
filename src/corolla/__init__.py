"""Corolla: federated learning, the same app in simulation and in deployment.

The public surface: records and messages from :mod:`corolla.core`, the apps
(:class:`ClientApp`, :class:`ServerApp`, :class:`Grid`), strategies, and
:func:`run_simulation`. Subpackages hold the rest (``corolla.data``, ``corolla.frameworks``).
"""

from .client import ClientApp
from .core import (
    ArrayRecord,
    ConfigRecord,
    Context,
    CorollaError,
    Error,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from .server import Grid, History, ServerApp
from .simulation import run_simulation
from .strategy import FedAvg, Strategy

__version__ = "0.1.0"

__all__ = [
    "ArrayRecord",
    "ClientApp",
    "ConfigRecord",
    "Context",
    "CorollaError",
    "Error",
    "FedAvg",
    "Grid",
    "History",
    "Message",
    "MessageType",
    "MetricRecord",
    "RecordDict",
    "ServerApp",
    "Strategy",
    "__version__",
    "run_simulation",
]
