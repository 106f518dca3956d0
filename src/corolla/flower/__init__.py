"""The compatibility layer with Flower (``flwr``), so that Corolla runs Flower apps unmodified.

Imported only where a Flower app is run; it needs the ``flower`` extra
(``pip install 'corolla[flower]'``, flwr 1.41 or 1.42), and importing it without flwr
raises :class:`~corolla.core.MissingExtraError`.

Converters between Flower's data types (``flwr.app``) and Corolla's (:mod:`corolla.core`),
each a ``*_from_flower`` / ``*_to_flower`` pair:

- arrays: a Flower ``Array`` <-> a NumPy array. From Flower, a ``"numpy.ndarray"`` array is
  a read-only view of the ``Array``'s bytes (no copy); to Flower, the elements are copied
  exactly once into the ``.npy`` bytes Flower wants.
- records: ``ArrayRecord``, ``MetricRecord``, ``ConfigRecord``, ``RecordDict``, names and
  order kept. What Flower holds and Corolla cannot (an empty name, a list mixing int and
  bool, an array of a dtype Corolla does not carry, an ``Array`` of a stype Flower cannot
  read) raises :class:`~corolla.core.RecordError` naming the record and the entry.
- messages: metadata, content, and errors with their codes mapped by meaning
  (:data:`FROM_FLOWER_CODES`, :data:`TO_FLOWER_CODES`).
- contexts: ids, configs and state, so a Flower ClientApp's ``context.state`` is kept per
  node across rounds.

Adapters at the boundary: :class:`FlowerGrid` is Flower's ``Grid`` over Corolla's, and
:func:`client_app_adapter` / :func:`server_app_adapter` make a Flower project's apps
Corolla apps where they are loaded.
"""

try:
    import flwr.app  # noqa: F401
except ImportError as exc:
    from corolla.core import MissingExtraError

    raise MissingExtraError("flwr", "flower") from exc

from ._apps import FlowerClient, client_app_adapter, server_app_adapter
from ._arrays import NUMPY_STYPE, array_from_flower, array_to_flower
from ._context import context_from_flower, context_to_flower
from ._grid import FlowerGrid
from ._messages import (
    FROM_FLOWER_CODES,
    TO_FLOWER_CODES,
    error_from_flower,
    error_to_flower,
    message_from_flower,
    message_to_flower,
)
from ._records import (
    array_record_from_flower,
    array_record_to_flower,
    config_record_from_flower,
    config_record_to_flower,
    metric_record_from_flower,
    metric_record_to_flower,
    record_dict_from_flower,
    record_dict_to_flower,
)

__all__ = [
    "FROM_FLOWER_CODES",
    "FlowerClient",
    "FlowerGrid",
    "NUMPY_STYPE",
    "TO_FLOWER_CODES",
    "array_from_flower",
    "array_record_from_flower",
    "array_record_to_flower",
    "array_to_flower",
    "client_app_adapter",
    "config_record_from_flower",
    "config_record_to_flower",
    "context_from_flower",
    "context_to_flower",
    "error_from_flower",
    "error_to_flower",
    "message_from_flower",
    "message_to_flower",
    "metric_record_from_flower",
    "metric_record_to_flower",
    "record_dict_from_flower",
    "record_dict_to_flower",
    "server_app_adapter",
]
