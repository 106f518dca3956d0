"""The numerical kernels of differential privacy: the L2 norm of an update, clipping it to a
norm, Gaussian noise, and the adaptive clipping norm of Andrew et al. (2021).

Pure functions over NumPy arrays, with no messages, logging or I/O. An update is a list
of arrays taken as one flat vector: its norm is the L2 norm over every element of every
array, so clipping bounds the whole update, not each layer. Results are float64.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core import ConfigError

__all__ = [
    "add_gaussian_noise",
    "adaptive_clipping_norm",
    "clip_in_place",
    "clip_update",
    "l2_norm",
    "noise_share_stddev",
    "update_noise_multiplier",
]

Arrays = Sequence["np.ndarray[Any, Any]"]

#: Rescaling a clipped update by C / norm can land a rounding error above C; each retry
#: shrinks the factor by this relative step, doubled at every retry (values near the
#: subnormal range round coarsely), so it ends within 52 retries.
_EPS = float(np.finfo(np.float64).eps)
_FIRST_SHRINK = 4.0 * _EPS


#: A sum of squares in this range is the norm's square to float64 precision: no element's
#: square overflowed, and those that underflowed weigh nothing beside it. Outside it, the
#: norm is taken over the arrays scaled by their largest magnitude.
_PLAIN_SQUARES = (1e-250, 1e300)


def l2_norm(arrays: Arrays) -> float:
    """The L2 norm of ``arrays`` taken as one flat vector, in float64.

    Scaled by the largest magnitude first when the plain sum of squares would overflow or
    underflow, so that updates of huge or tiny values keep their norm:
    ``l2_norm([np.array([1e200, 1e200])])`` is ``1.414e200``. Only a norm beyond the
    largest float64 (of elements near it) is infinite.

    Raises
    ------
    ConfigError
        If an array holds NaN or infinity (such an update has no norm to clip to).
    """
    return _norm([np.asarray(a, dtype=np.float64) for a in arrays])


def _norm(arrays: list[np.ndarray[Any, Any]]) -> float:
    """:func:`l2_norm` of float64 arrays: one dot product per array, in the common case."""
    squares = 0.0
    # An overflow or NaN here only sends the norm to the scaled computation below.
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        for a in arrays:
            squares += _squares(a.reshape(-1))
    if _PLAIN_SQUARES[0] < squares < _PLAIN_SQUARES[1]:
        return math.sqrt(squares)
    largest, relative = _norm_parts(arrays)
    return largest * relative


def _norm_parts(arrays: list[np.ndarray[Any, Any]]) -> tuple[float, float]:
    """The largest magnitude M and the norm of the arrays over M (1 to sqrt(size)); (0, 0)
    for the zero vector.

    Raises
    ------
    ConfigError
        If an array holds NaN or infinity.
    """
    largest = max((float(np.max(np.abs(a))) if a.size else 0.0 for a in arrays), default=0.0)
    if not math.isfinite(largest):
        raise ConfigError("the update holds NaN or infinity: it has no norm to clip to")
    if largest == 0.0:
        return 0.0, 0.0
    total = 0.0
    for a in arrays:
        total += _squares(a.reshape(-1) / largest)
    return largest, math.sqrt(total)


def _squares(flat: np.ndarray[Any, Any]) -> float:
    """The sum of the squares of a flat float64 array, without BLAS: ``np.dot`` would run
    BLAS's threads, which in the simulation's worker processes (one per core already)
    spin against each other and make a round many times slower, and unevenly so."""
    return float(np.einsum("i,i->", flat, flat))


def clip_update(
    arrays: Arrays, clipping_norm: float
) -> tuple[list[np.ndarray[Any, Any]], float, bool]:
    """``arrays`` scaled down so that their joint L2 norm is at most ``clipping_norm``.

    An update within the norm (the zero vector included) is returned unchanged (as
    float64 copies); a longer one is scaled by ``clipping_norm / norm``, never above the
    norm despite rounding.

    Returns
    -------
    clipped, norm, unclipped
        The clipped arrays (float64, the input's shapes), the norm of the input, and
        whether the input was within the norm (the bit adaptive clipping counts).

    Raises
    ------
    ConfigError
        If ``clipping_norm`` is not a positive finite number, or an array holds NaN or
        infinity.
    """
    clipped = [np.array(a, dtype=np.float64) for a in arrays]
    norm, within = clip_in_place(clipped, clipping_norm)
    return clipped, norm, within


def clip_in_place(arrays: list[np.ndarray[Any, Any]], clipping_norm: float) -> tuple[float, bool]:
    """:func:`clip_update` of float64 ``arrays`` (ndarrays, 0-d ones included), scaling
    them where they are; the norm they had, and whether it was within ``clipping_norm``.

    Raises
    ------
    ConfigError
        As :func:`clip_update` (the arrays are then unchanged).
    """
    check_clipping_norm(clipping_norm)
    norm = _norm(arrays)
    if norm <= clipping_norm:
        return norm, True
    if 1e-150 < norm < 1e150 and 1e-150 < clipping_norm < 1e150:
        # The computed norm and the scaled elements are off by at most (n + 3) eps
        # relative, for n squares summed in any order: scaling to C less twice that lands
        # the norm (true and computed) within C without measuring it again.
        size = sum(a.size for a in arrays) + len(arrays)
        factor = clipping_norm / norm * (1.0 - 2.0 * (size + 8) * _EPS)
        for a in arrays:
            np.multiply(a, factor, out=a)
        return norm, False
    # Divide by the parts of the norm first: the norm or C / norm alone may overflow or be
    # subnormal.
    largest, relative = _norm_parts(arrays)
    for a in arrays:
        np.divide(a, largest, out=a)
        np.divide(a, relative, out=a)
        np.multiply(a, clipping_norm, out=a)
    # Rescaling through the norm's parts can land a rounding error above C: shrink until
    # it does not.
    shrink = _FIRST_SHRINK
    while _norm(arrays) > clipping_norm:
        for a in arrays:
            np.multiply(a, 1.0 - shrink, out=a)
        shrink = min(2.0 * shrink, 0.5)
    return norm, False


def check_clipping_norm(clipping_norm: float) -> float:
    """Check a clipping norm.

    Raises
    ------
    ConfigError
        If it is not a positive finite number.
    """
    if not isinstance(clipping_norm, int | float) or not 0.0 < clipping_norm < math.inf:
        raise ConfigError(f"clipping norm must be a positive finite number, got {clipping_norm!r}")
    return float(clipping_norm)


def add_gaussian_noise(
    arrays: Arrays, stddev: float, rng: np.random.Generator
) -> list[np.ndarray[Any, Any]]:
    """``arrays`` plus independent Gaussian noise of standard deviation ``stddev`` on every
    element, drawn from ``rng``, as float64 copies.

    It applies to a mean, a sum (e.g. the already-summed aggregate of a secure
    aggregation) or a single update alike: the caller scales ``stddev`` to what it noises
    (``noise_multiplier * C`` on a sum of updates clipped to C, that over the number of
    nodes on their mean).

    Raises
    ------
    ConfigError
        If ``stddev`` is negative or not finite.
    """
    if not isinstance(stddev, int | float) or not 0.0 <= stddev < math.inf:
        raise ConfigError(f"noise standard deviation must be finite and >= 0, got {stddev!r}")
    out = []
    for a in arrays:
        noised = np.array(a, dtype=np.float64)
        if stddev > 0.0:
            noised += rng.normal(0.0, stddev, size=noised.shape)
        out.append(noised)
    return out


def noise_share_stddev(stddev: float, num_shares: int) -> float:
    """The standard deviation each of ``num_shares`` parties adds so that the sum of their
    independent noises has standard deviation ``stddev``: ``stddev / sqrt(num_shares)``.

    With secure aggregation the server only sees the sum, so each node may add its share
    of the noise to its clipped update: as long as at least ``num_shares`` nodes' shares
    reach the sum, it holds the full noise and no party ever sees a less noisy value.

    Raises
    ------
    ConfigError
        If ``stddev`` is negative or ``num_shares`` is below 1.
    """
    if num_shares < 1:
        raise ConfigError(f"the noise needs at least 1 share, got {num_shares}")
    if not 0.0 <= stddev < math.inf:
        raise ConfigError(f"noise standard deviation must be finite and >= 0, got {stddev!r}")
    return stddev / math.sqrt(num_shares)


def adaptive_clipping_norm(
    clipping_norm: float, unclipped_fraction: float, target_quantile: float, learning_rate: float
) -> float:
    """The next clipping norm of adaptive clipping (Andrew et al., 2021, geometric update):
    ``C * exp(-learning_rate * (unclipped_fraction - target_quantile))``.

    When more updates than ``target_quantile`` fit within C, C shrinks; when fewer do, it
    grows, so that C tracks the ``target_quantile`` quantile of the updates' norms.
    ``unclipped_fraction`` is the (noised) fraction of updates within C, and may lie
    outside [0, 1] because of the noise.
    """
    return clipping_norm * math.exp(-learning_rate * (unclipped_fraction - target_quantile))


def update_noise_multiplier(noise_multiplier: float, clipped_count_stddev: float) -> float:
    """The noise multiplier left for the updates when adaptive clipping also noises the
    count of unclipped updates with ``clipped_count_stddev`` (Andrew et al., 2021, Thm. 1):
    ``(z**-2 - (2 * clipped_count_stddev)**-2) ** -0.5``.

    The two Gaussian releases of a round together cost what one Gaussian mechanism of
    multiplier ``noise_multiplier`` costs, so the accountant counts ``noise_multiplier``.

    Raises
    ------
    ConfigError
        If ``2 * clipped_count_stddev`` is not above ``noise_multiplier`` (the count
        would spend the whole budget of the round).
    """
    if noise_multiplier <= 0.0:
        raise ConfigError(f"noise multiplier must be > 0, got {noise_multiplier}")
    if 2.0 * clipped_count_stddev <= noise_multiplier:
        raise ConfigError(
            f"adaptive clipping needs clipped_count_stddev > noise_multiplier / 2 "
            f"({noise_multiplier / 2:g}), got {clipped_count_stddev}: raise it (Andrew et "
            f"al. suggest the expected number of nodes per round over 20) or the multiplier"
        )
    rest = noise_multiplier**-2 - (2.0 * clipped_count_stddev) ** -2
    return float(rest**-0.5)
