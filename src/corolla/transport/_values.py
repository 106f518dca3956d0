"""Values the wire carries in records and configs, checked on the way out.

Protobuf's integers are 64-bit and its strings UTF-8: a Python int beyond 64 bits, an id
outside ``uint64`` or a string with lone surrogates raise the error of the object at fault
(:class:`~corolla.core.RecordError`, :class:`~corolla.core.MessageError`) rather than
protobuf's own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

from corolla.core import MessageError, RecordError

from ._proto import records_pb2

__all__ = [
    "INT64",
    "get_value",
    "int64",
    "scalar_kind",
    "set_value",
    "uint64",
    "unique",
    "valid_text",
]

INT64 = (-(2**63), 2**63 - 1)
_UINT64 = 2**64 - 1


def int64(value: int, where: str) -> int:
    if not INT64[0] <= value <= INT64[1]:
        raise RecordError(f"{where}: {value} does not fit the wire's signed 64-bit integers")
    return value


def uint64(value: int, field: str) -> int:
    if not isinstance(value, int) or not 0 <= value <= _UINT64:
        raise MessageError(f"metadata {field} must be an int in [0, 2**64), got {value!r}")
    return value


@contextlib.contextmanager
def valid_text(error: type[RecordError | MessageError], what: str) -> Iterator[None]:
    # protobuf strings are UTF-8; a Python str may hold lone surrogates, which are not.
    try:
        yield
    except UnicodeEncodeError as exc:
        raise error(f"{what} holds a string that is not valid Unicode: {exc}") from exc


def unique(names: Iterable[str], kind: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise RecordError(f"{kind} names {name!r} twice")
        seen.add(name)


def scalar_kind(value: object) -> str:
    # bool before int: True is an int to isinstance.
    for kind, types in (
        ("bool", bool),
        ("int", int),
        ("float", float),
        ("string", str),
        ("bytes", bytes),
    ):
        if isinstance(value, types):
            return kind
    raise RecordError(f"no wire type for a value of type {type(value).__name__}")


def set_value(
    proto: records_pb2.MetricValue | records_pb2.ConfigValue, value: Any, where: str
) -> None:
    if isinstance(value, list):
        kind = scalar_kind(value[0]) if value else "int"
        if kind == "int":
            value = [int64(v, where) for v in value]
        getattr(proto, f"{kind}_list").values.extend(value)
        if not value:  # an empty list must still select the oneof member
            getattr(proto, f"{kind}_list").SetInParent()
        return
    kind = scalar_kind(value)
    if kind == "int":
        int64(value, where)
    setattr(proto, f"{kind}_value", value)


def get_value(proto: records_pb2.MetricValue | records_pb2.ConfigValue, where: str) -> Any:
    kind = proto.WhichOneof("value")
    if kind is None:
        raise RecordError(f"{where} has no value")
    if kind.endswith("_list"):
        return list(getattr(proto, kind).values)
    return getattr(proto, kind)
