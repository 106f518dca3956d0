"""Records: Flower's ``ArrayRecord``, ``MetricRecord``, ``ConfigRecord`` and ``RecordDict``
<-> Corolla's.

Names and their order are kept. Corolla's records hold everything Flower's do, with these
exceptions, which raise :class:`~corolla.core.RecordError` naming the entry:

- an empty name (Flower takes any string, Corolla needs a non-empty one);
- a list mixing ``int`` and ``bool`` (Flower checks a list's items against the type of
  its first one, so ``[1, True]`` passes; Corolla's metrics take no bool at all, and its
  config lists hold one type);
- an array Corolla does not carry: a dtype other than bool, (u)int8-64, float16/32/64 and
  complex64/128 (strings, datetimes, structured, ``longdouble``), or an ``Array`` whose
  stype Flower cannot turn into NumPy.

Flower's legacy API marks parameters with no arrays by an ArrayRecord holding one empty
``Array`` named ``"_empty"``; that reads as an empty ArrayRecord.

Every Corolla record converts to Flower. Records on Flower's side are mutable, so list
values are copied both ways and nothing converted aliases a Flower list; arrays are views
of the Flower ``Array``'s immutable bytes.

Flower checks every entry put into one of its records, one at a time. What Corolla's
records hold has passed stricter checks already, so records going to Flower are filled
in one step, where Flower keeps its entries in the plain dict its ``TypedDict`` has
(flwr 1.41 and 1.42 do; with any other layout the entries go in one by one, checked).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from flwr import app as flwr_app
from flwr.app.message import recorddict as _flower_recorddict

from corolla.core import ArrayRecord, ConfigRecord, MetricRecord, Record, RecordDict, RecordError

from ._arrays import array_from_flower, array_to_flower

__all__ = [
    "array_record_from_flower",
    "array_record_to_flower",
    "config_record_from_flower",
    "config_record_to_flower",
    "metric_record_from_flower",
    "metric_record_to_flower",
    "record_dict_from_flower",
    "record_dict_to_flower",
]

#: The name of the empty ``Array`` that stands for no arrays in Flower's legacy records.
LEGACY_EMPTY = "_empty"

FlowerRecord = flwr_app.ArrayRecord | flwr_app.MetricRecord | flwr_app.ConfigRecord
F = TypeVar(
    "F", flwr_app.ArrayRecord, flwr_app.MetricRecord, flwr_app.ConfigRecord, flwr_app.RecordDict
)


def _holds_entries_in_a_dict(record_type: type[Any]) -> bool:
    entries = record_type().__dict__.get("_data")
    return type(entries) is dict and not entries


_FILL_DIRECTLY = all(
    _holds_entries_in_a_dict(record_type)
    for record_type in (
        flwr_app.ArrayRecord,
        flwr_app.MetricRecord,
        flwr_app.ConfigRecord,
        flwr_app.RecordDict,
    )
)


#: Flower's view of one kind of record in a RecordDict (flwr 1.41 and 1.42 have it; with
#: another flwr, the views are Flower's own).
_SYNCED_DICT: Any = getattr(_flower_recorddict, "_SyncedDict", None)


class _CheckedRecordDict(flwr_app.RecordDict):
    """A Flower ``RecordDict`` made from a Corolla one, whose entries need no checks.

    Flower's strategies read a reply's records through ``array_records`` and
    ``metric_records``, several times per reply; Flower builds each view by putting the
    records into it one by one, each checked and written back into the RecordDict. Here
    a view is filled in one step: the same view (changes to it still reach the
    RecordDict), a tenth of the work.
    """

    def _view(self, record_type: type[F]) -> Any:
        if _SYNCED_DICT is None or not _FILL_DIRECTLY:
            return getattr(super(), _VIEWS[record_type])
        view = _SYNCED_DICT(self, record_type)
        view.__dict__["_data"].update(
            (name, record)
            for name, record in self.__dict__["_data"].items()
            if isinstance(record, record_type)
        )
        return view

    @property
    def array_records(self) -> Any:
        return self._view(flwr_app.ArrayRecord)

    @property
    def metric_records(self) -> Any:
        return self._view(flwr_app.MetricRecord)

    @property
    def config_records(self) -> Any:
        return self._view(flwr_app.ConfigRecord)

    def deflate(self) -> bytes:
        # Flower's wire format names an object's class; this one travels as a RecordDict.
        return flwr_app.RecordDict(dict(self.items())).deflate()


_VIEWS = {
    flwr_app.ArrayRecord: "array_records",
    flwr_app.MetricRecord: "metric_records",
    flwr_app.ConfigRecord: "config_records",
}


def _filled(record_type: type[F], entries: Iterable[tuple[str, Any]]) -> F:
    """A new Flower record of ``record_type`` holding ``entries``, which Corolla checked."""
    record = record_type()
    if _FILL_DIRECTLY:
        record.__dict__["_data"].update(entries)
    else:
        for name, value in entries:
            record[name] = value
    return record


def array_record_from_flower(record: flwr_app.ArrayRecord) -> ArrayRecord:
    """A Corolla :class:`~corolla.core.ArrayRecord` viewing a Flower one's arrays.

    Raises
    ------
    RecordError
        If an entry has an empty name, or an array Corolla does not carry (see the module
        notes), naming the entry.
    """
    if list(record) == [LEGACY_EMPTY] and not record[LEGACY_EMPTY].data:
        return ArrayRecord()
    arrays = {}
    for name, array in record.items():
        try:
            arrays[name] = array_from_flower(array)
        except RecordError as exc:
            raise RecordError(f"ArrayRecord entry {name!r}: {exc}") from exc
    return ArrayRecord(arrays)


def array_record_to_flower(record: ArrayRecord) -> flwr_app.ArrayRecord:
    """A Flower ``ArrayRecord`` of ``"numpy.ndarray"`` arrays, each copied once."""
    return _filled(
        flwr_app.ArrayRecord, [(name, array_to_flower(array)) for name, array in record.items()]
    )


def metric_record_from_flower(record: flwr_app.MetricRecord) -> MetricRecord:
    """A Corolla :class:`~corolla.core.MetricRecord` with a Flower one's entries.

    Raises
    ------
    RecordError
        If an entry has an empty name or a list holding a bool, naming the entry.
    """
    return MetricRecord(record.items())


def metric_record_to_flower(record: MetricRecord) -> flwr_app.MetricRecord:
    """A Flower ``MetricRecord`` with the same entries (lists copied)."""
    return _filled(flwr_app.MetricRecord, record.items())


def config_record_from_flower(record: flwr_app.ConfigRecord) -> ConfigRecord:
    """A Corolla :class:`~corolla.core.ConfigRecord` with a Flower one's entries.

    Raises
    ------
    RecordError
        If an entry has an empty name or a list mixing int and bool, naming the entry.
    """
    return ConfigRecord(record.items())


def config_record_to_flower(record: ConfigRecord) -> flwr_app.ConfigRecord:
    """A Flower ``ConfigRecord`` with the same entries (lists copied)."""
    return _filled(flwr_app.ConfigRecord, record.items())


def record_dict_from_flower(records: flwr_app.RecordDict) -> RecordDict:
    """A Corolla :class:`~corolla.core.RecordDict` with a Flower one's records, in order.

    Raises
    ------
    RecordError
        If a record or an entry cannot be held by Corolla (see the module notes); the
        message names the record and the entry.
    """
    converted: dict[str, Record] = {}
    for name, record in records.items():
        try:
            converted[name] = _record_from_flower(record)
        except RecordError as exc:
            raise RecordError(f"Flower RecordDict entry {name!r}: {exc}") from exc
    return RecordDict(converted)


def _record_from_flower(record: Any) -> Record:
    if isinstance(record, flwr_app.ArrayRecord):
        return array_record_from_flower(record)
    if isinstance(record, flwr_app.MetricRecord):
        return metric_record_from_flower(record)
    if isinstance(record, flwr_app.ConfigRecord):
        return config_record_from_flower(record)
    raise RecordError(
        f"must be a Flower ArrayRecord, MetricRecord or ConfigRecord, got {type(record).__name__}"
    )


def record_dict_to_flower(records: RecordDict) -> flwr_app.RecordDict:
    """A Flower ``RecordDict`` with the same records, in order."""
    return _filled(
        _CheckedRecordDict,
        [(name, _record_to_flower(record)) for name, record in records.items()],
    )


def _record_to_flower(record: Record) -> FlowerRecord:
    if isinstance(record, ArrayRecord):
        return array_record_to_flower(record)
    if isinstance(record, MetricRecord):
        return metric_record_to_flower(record)
    return config_record_to_flower(record)
