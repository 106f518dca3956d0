"""Records: the typed, immutable containers that messages carry.

- :class:`ArrayRecord`: ordered name -> ``numpy.ndarray`` (model weights, updates).
- :class:`MetricRecord`: name -> int | float | list of those (losses, accuracies, counts).
- :class:`ConfigRecord`: name -> int | float | bool | str | bytes | list of those.
- :class:`RecordDict`: name -> one of the three records; the content of a message.

Records are immutable mappings. Arrays placed in an :class:`ArrayRecord` are exposed as
read-only views (no copy), so a ClientApp cannot change the global model that other
virtual nodes share; derive new records instead (``record | {"name": value}``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar, cast

import numpy as np

from ._codec import check_dtype
from ._errors import CodecError, RecordError

__all__ = [
    "ArrayRecord",
    "ConfigRecord",
    "ConfigValue",
    "MetricRecord",
    "MetricValue",
    "Record",
    "RecordDict",
]

MetricScalar = int | float
MetricValue = int | float | list[int] | list[float]
ConfigScalar = int | float | bool | str | bytes
ConfigValue = (
    int
    | float
    | bool
    | str
    | bytes
    | list[int]
    | list[float]
    | list[bool]
    | list[str]
    | list[bytes]
)

V = TypeVar("V")
R = TypeVar("R", bound="_FrozenRecord[Any]")


def _check_name(name: object, kind: str) -> str:
    if not isinstance(name, str) or not name:
        raise RecordError(f"{kind} keys must be non-empty strings, got {name!r}")
    return name


class _FrozenRecord(Mapping[str, V]):
    """An immutable, ordered mapping with validated values."""

    __slots__ = ("_data",)
    _kind = "record"

    def __init__(self, items: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None) -> None:
        pairs = items.items() if isinstance(items, Mapping) else (items or ())
        data: dict[str, V] = {}
        for pair in pairs:
            try:
                if isinstance(pair, str | bytes | np.ndarray):  # unpackable, but not a pair
                    raise TypeError
                raw_name, value = pair
            except (TypeError, ValueError):
                raise self._not_a_pair(pair) from None
            name = _check_name(raw_name, self._kind)  # before the value, whose error names it
            data[name] = self._validate(name, value)
        self._data = data

    def _validate(self, name: str, value: Any) -> V:
        raise NotImplementedError

    def _not_a_pair(self, item: object) -> RecordError:
        hint = (
            "; for a list of arrays use ArrayRecord.from_numpy"
            if self._kind == "ArrayRecord"
            else ""
        )
        return RecordError(
            f"{self._kind} takes a mapping or (name, value) pairs, "
            f"got an item of type {type(item).__name__}{hint}"
        )

    def __getitem__(self, key: str) -> V:
        try:
            value = self._data[key]
        except KeyError:
            raise KeyError(
                f"{self._kind} has no entry {key!r}; it has {sorted(self._data)}"
            ) from None
        # A list value is handed out as a copy, so the record cannot be changed through it.
        return cast(V, list(value)) if isinstance(value, list) else value

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __or__(self: R, other: Mapping[str, Any]) -> R:
        """A new record with the entries of ``other`` added or replacing these ones."""
        if not isinstance(other, Mapping):
            return NotImplemented
        merged = dict(self._data)
        merged.update(other)
        return type(self)(merged)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._data!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickles travel only between Corolla's own processes, and unpickling can run any
        # code, so checking the entries again on the way in would guard nothing: they are
        # restored as they were checked, which keeps a reply's trip from a worker cheap.
        return (_restore, (type(self), self._data))

    def _restored(self) -> None:
        """Called on a record rebuilt from a pickle, entries in place."""


def _restore(record_type: type[R], data: dict[str, Any]) -> R:
    record = record_type.__new__(record_type)
    record._data = data
    record._restored()
    return record


class ArrayRecord(_FrozenRecord[np.ndarray]):
    """Ordered mapping of names to NumPy arrays.

    Arrays are stored as read-only views of the arrays given: nothing is copied. Scalars
    and (nested) lists of numbers are turned into arrays. Two records are equal when they
    have the same names in the same order and equal arrays of the same dtype (byte order
    aside) and shape; NaNs compare equal.

    Raises
    ------
    RecordError
        If a name is not a non-empty string or a value is not an array of one of the dtypes
        the wire carries (bool, int8-64, uint8-64, float16/32/64, complex64/128).
    """

    __slots__ = ()
    _kind = "ArrayRecord"

    def _restored(self) -> None:
        # An array unpickled in-band owns fresh, writable memory; the record's are read-only.
        for array in self._data.values():
            if array.flags.writeable:
                array.flags.writeable = False

    def _validate(self, name: str, value: Any) -> np.ndarray:
        if not isinstance(value, np.ndarray):
            if not isinstance(value, np.generic | int | float | complex | list | tuple):
                raise RecordError(
                    f"ArrayRecord entry {name!r} must be a numpy array, got {type(value).__name__}"
                )
            try:
                value = np.asarray(value)
            except (TypeError, ValueError) as exc:  # e.g. a ragged nested list
                raise RecordError(f"ArrayRecord entry {name!r} is not an array: {exc}") from exc
        try:
            check_dtype(value.dtype)
        except CodecError as exc:
            raise RecordError(f"ArrayRecord entry {name!r}: {exc}") from exc
        if type(value) is np.ndarray and not value.flags.writeable:
            return value
        # A plain ndarray view: subclasses (np.matrix, masked arrays) change what indexing
        # and arithmetic mean, and the record must not let anyone write to the caller's data.
        view: np.ndarray = value.view(np.ndarray)
        view.flags.writeable = False
        return view

    @classmethod
    def from_numpy(cls, arrays: Sequence[np.ndarray]) -> ArrayRecord:
        """Build a record from a list of arrays, named ``"0"``, ``"1"``, ... in order."""
        return cls((str(i), a) for i, a in enumerate(arrays))

    def to_numpy(self) -> list[np.ndarray]:
        """The arrays, in order (read-only views)."""
        return list(self._data.values())

    @property
    def nbytes(self) -> int:
        """Total number of bytes of the arrays' elements."""
        return sum(int(a.nbytes) for a in self._data.values())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ArrayRecord):
            return NotImplemented
        if list(self._data) != list(other._data):
            return False
        return all(
            a.dtype.newbyteorder("<") == b.dtype.newbyteorder("<")
            and a.shape == b.shape
            and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")
            for a, b in zip(self._data.values(), other._data.values(), strict=True)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        inner = ", ".join(f"{k!r}: {v.dtype}{list(v.shape)}" for k, v in self._data.items())
        return f"ArrayRecord({{{inner}}})"


def _same_value(a: object, b: object) -> bool:
    """Equality that tells ``True`` from ``1`` and ``1`` from ``1.0``, with NaN equal to NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        assert isinstance(b, list)
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(cast(float, b))
    return a == b


def _same_entries(a: Mapping[str, object], b: Mapping[str, object]) -> bool:
    return a.keys() == b.keys() and all(_same_value(a[k], b[k]) for k in a)


def _scalar_metric(name: str, value: Any) -> MetricScalar:
    if isinstance(value, bool | np.bool_):
        raise RecordError(f"MetricRecord entry {name!r}: bool is not a metric (use 0 or 1)")
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value)
    raise RecordError(
        f"MetricRecord entry {name!r} must be int, float or a list of those, "
        f"got {type(value).__name__}"
    )


class MetricRecord(_FrozenRecord[MetricValue]):
    """Mapping of names to int, float, or homogeneous lists of those.

    Raises
    ------
    RecordError
        If a value is of another type (bools are rejected) or a list mixes types.
    """

    __slots__ = ()
    _kind = "MetricRecord"

    def _validate(self, name: str, value: Any) -> MetricValue:
        if isinstance(value, np.ndarray):
            if value.ndim == 0:
                return _scalar_metric(name, value[()])
            if value.ndim != 1:
                raise RecordError(
                    f"MetricRecord entry {name!r}: a {value.ndim}-d array is not a metric; "
                    "put arrays in an ArrayRecord"
                )
        if isinstance(value, list | tuple | np.ndarray):
            items = [_scalar_metric(name, v) for v in value]
            if len({type(v) for v in items}) > 1:
                raise RecordError(f"MetricRecord entry {name!r}: list mixes int and float")
            return cast(MetricValue, items)
        return _scalar_metric(name, value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MetricRecord):
            return NotImplemented
        return _same_entries(self._data, other._data)

    __hash__ = None  # type: ignore[assignment]


#: The types a ConfigRecord keeps as they are: a value of exactly one of them needs no
#: conversion (a subclass, say np.str_ or an IntEnum, becomes its plain base).
_PLAIN_CONFIG = frozenset({bool, int, float, str, bytes})


def _scalar_config(name: str, value: Any) -> ConfigScalar:
    if type(value) in _PLAIN_CONFIG:
        return cast(ConfigScalar, value)
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value)
    if isinstance(value, str):
        return str(value)  # a subclass such as np.str_ becomes a plain str
    if isinstance(value, bytes):
        return bytes(value)
    raise RecordError(
        f"ConfigRecord entry {name!r} must be int, float, bool, str, bytes or a list of those, "
        f"got {type(value).__name__}"
    )


class ConfigRecord(_FrozenRecord[ConfigValue]):
    """Mapping of names to int, float, bool, str, bytes, or homogeneous lists of those.

    Raises
    ------
    RecordError
        If a value is of another type or a list mixes types.
    """

    __slots__ = ()
    _kind = "ConfigRecord"

    def _validate(self, name: str, value: Any) -> ConfigValue:
        if isinstance(value, list | tuple):
            # A list of one plain type (keys, ciphertexts, node ids) is kept as it is.
            kind = type(value[0]) if value else None
            if kind in _PLAIN_CONFIG and all(type(v) is kind for v in value):
                return list(value)
            items = [_scalar_config(name, v) for v in value]
            if len({type(v) for v in items}) > 1:
                raise RecordError(f"ConfigRecord entry {name!r}: list mixes types")
            return cast(ConfigValue, items)
        return _scalar_config(name, value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ConfigRecord):
            return NotImplemented
        return _same_entries(self._data, other._data)

    __hash__ = None  # type: ignore[assignment]


Record = ArrayRecord | MetricRecord | ConfigRecord


class RecordDict(_FrozenRecord[Record]):
    """The content of a message: names mapped to array, metric or config records.

    Raises
    ------
    RecordError
        If a value is not an :class:`ArrayRecord`, :class:`MetricRecord` or
        :class:`ConfigRecord`.
    """

    __slots__ = ()
    _kind = "RecordDict"

    def _validate(self, name: str, value: Any) -> Record:
        if not isinstance(value, ArrayRecord | MetricRecord | ConfigRecord):
            raise RecordError(
                f"RecordDict entry {name!r} must be an ArrayRecord, MetricRecord or "
                f"ConfigRecord, got {type(value).__name__}"
            )
        return value

    def _of_type(self, kind: type[R]) -> dict[str, R]:
        return {k: v for k, v in self._data.items() if isinstance(v, kind)}

    @property
    def array_records(self) -> dict[str, ArrayRecord]:
        """The :class:`ArrayRecord` entries, in order (a new dict each time)."""
        return self._of_type(ArrayRecord)

    @property
    def metric_records(self) -> dict[str, MetricRecord]:
        """The :class:`MetricRecord` entries, in order (a new dict each time)."""
        return self._of_type(MetricRecord)

    @property
    def config_records(self) -> dict[str, ConfigRecord]:
        """The :class:`ConfigRecord` entries, in order (a new dict each time)."""
        return self._of_type(ConfigRecord)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RecordDict):
            return NotImplemented
        return list(self._data) == list(other._data) and all(
            self._data[k] == other._data[k] for k in self._data
        )

    __hash__ = None  # type: ignore[assignment]


def is_finite_metric(value: MetricValue) -> bool:
    """True if a metric value (scalar or list) holds no NaN or infinity."""
    values = value if isinstance(value, list) else [value]
    return all(math.isfinite(v) for v in values)
