"""NumPy adapter: a list of arrays <-> :class:`~corolla.core.ArrayRecord`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core import ArrayRecord, RecordError

__all__ = ["arrays_from_numpy", "arrays_to_numpy"]


def arrays_from_numpy(
    arrays: Sequence[np.ndarray[Any, Any]], names: Sequence[str] | None = None
) -> ArrayRecord:
    """Build a record from a list of arrays, without copying them.

    Parameters
    ----------
    arrays
        The arrays, in order. The record holds read-only views of them, so later in-place
        changes to an array show through the record; pass copies for a snapshot.
    names
        One name per array; by default ``"0"``, ``"1"``, ... in order.

    Returns
    -------
    ArrayRecord
        The arrays under their names, in the order given.

    Raises
    ------
    RecordError
        If ``names`` has another length than ``arrays`` or repeats a name, or an array
        has a dtype the wire cannot carry (see :class:`~corolla.core.ArrayRecord`).
    """
    if names is None:
        return ArrayRecord.from_numpy(arrays)
    names = list(names)
    if len(names) != len(arrays):
        raise RecordError(f"got {len(arrays)} arrays but {len(names)} names")
    if len(set(names)) != len(names):
        repeated = sorted({n for n in names if names.count(n) > 1})
        raise RecordError(f"array names must be unique; repeated: {repeated}")
    return ArrayRecord(zip(names, arrays, strict=True))


def arrays_to_numpy(record: ArrayRecord, *, copy: bool = False) -> list[np.ndarray[Any, Any]]:
    """The record's arrays, in order.

    Parameters
    ----------
    copy
        By default the arrays are the record's read-only views (no copy). With ``copy=True``
        each is a fresh, writable, C-contiguous copy, for code that updates arrays in place.
    """
    arrays = record.to_numpy()
    if copy:
        return [np.array(a, order="C", copy=True) for a in arrays]
    return arrays
