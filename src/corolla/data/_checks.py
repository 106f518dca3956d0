"""Argument checks shared by the partitioners, the report and the loaders.

Each check raises :class:`~corolla.core._errors.ConfigError` with a message that names the
argument, so a bad experiment configuration fails before any data is touched.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from corolla.core import ConfigError

__all__ = [
    "check_fraction",
    "check_int",
    "check_labels",
    "check_non_negative",
    "check_positive",
    "check_rng",
]


def check_int(name: str, value: object, *, minimum: int) -> int:
    """Return ``value`` as an ``int`` if it is an integer of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def check_fraction(name: str, value: object) -> float:
    """Return ``value`` as a ``float`` if it lies strictly between 0 and 1."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    fraction = float(value)
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"{name} must lie strictly between 0 and 1, got {value}")
    return fraction


def check_non_negative(name: str, value: object) -> float:
    """Return ``value`` as a ``float`` if it is finite and at least zero."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < 0.0:
        raise ConfigError(f"{name} must be finite and at least 0, got {value}")
    return number


def check_positive(name: str, value: object) -> float:
    """Return ``value`` as a ``float`` if it is finite and greater than zero."""
    number = check_non_negative(name, value)
    if number == 0.0:
        raise ConfigError(f"{name} must be greater than 0, got {value}")
    return number


def check_rng(rng: object) -> np.random.Generator:
    """Return ``rng`` if it is a NumPy ``Generator``; a seed or ``RandomState`` is refused."""
    if not isinstance(rng, np.random.Generator):
        raise ConfigError(
            "rng must be a numpy.random.Generator (e.g. numpy.random.default_rng(seed)), "
            f"got {type(rng).__name__}"
        )
    return rng


def check_labels(labels: ArrayLike) -> NDArray[np.int64]:
    """Return ``labels`` as a non-empty 1-D ``int64`` array of class labels."""
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ConfigError(f"labels must be a 1-D array, got shape {array.shape}")
    if array.size == 0:
        raise ConfigError("labels must not be empty")
    if array.dtype.kind not in "iu":
        raise ConfigError(f"labels must be integers, got dtype {array.dtype}")
    return array.astype(np.int64, copy=False)
