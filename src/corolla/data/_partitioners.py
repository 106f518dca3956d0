"""Partitioners: split a data set's sample indices among simulated clients.

Each partitioner is a pure function of its arguments and an explicit
``numpy.random.Generator``: the same generator state gives the same partitions. Each returns a
list with one sorted ``int64`` index array per partition, and every partitioner here assigns
every sample to exactly one partition.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from corolla.core import ConfigError

from ._checks import check_int, check_labels, check_non_negative, check_positive, check_rng

__all__ = [
    "dirichlet_partition",
    "iid_partition",
    "power_law_partition",
    "shard_partition",
]

Partitions = list[NDArray[np.int64]]


def _sorted_parts(parts: list[NDArray[np.int64]]) -> Partitions:
    return [np.sort(part).astype(np.int64, copy=False) for part in parts]


def _check_enough(num_samples: int, num_partitions: int, per_partition: int, what: str) -> None:
    needed = num_partitions * per_partition
    if num_samples < needed:
        raise ConfigError(
            f"{num_samples} samples cannot give {num_partitions} partitions "
            f"{per_partition} {what} each (needs at least {needed})"
        )


def iid_partition(num_samples: int, num_partitions: int, rng: np.random.Generator) -> Partitions:
    """Shuffle the sample indices, then split them as evenly as possible.

    Partition sizes differ by at most one; the first ``num_samples % num_partitions``
    partitions hold the extra sample.

    Parameters
    ----------
    num_samples
        Number of samples to partition (indices ``0 .. num_samples - 1``).
    num_partitions
        Number of partitions.
    rng
        Source of the shuffle.

    Returns
    -------
    list of numpy.ndarray
        One sorted ``int64`` index array per partition.

    Raises
    ------
    ConfigError
        If ``num_partitions < 1``, if ``num_samples < num_partitions`` (a partition would be
        empty), or if ``rng`` is not a ``numpy.random.Generator``.
    """
    num_samples = check_int("num_samples", num_samples, minimum=1)
    num_partitions = check_int("num_partitions", num_partitions, minimum=1)
    rng = check_rng(rng)
    _check_enough(num_samples, num_partitions, 1, "sample")
    order = rng.permutation(num_samples).astype(np.int64)
    return _sorted_parts(np.array_split(order, num_partitions))


def dirichlet_partition(
    labels: ArrayLike,
    num_partitions: int,
    alpha: float,
    rng: np.random.Generator,
    *,
    min_partition_size: int = 2,
    self_balancing: bool = False,
    max_tries: int = 100,
) -> Partitions:
    """Split each class among partitions in proportions drawn from Dirichlet(alpha).

    This is the scheme of Hsu et al. (2019), as in Flower's ``DirichletPartitioner``. For each
    class in turn, its indices are shuffled, proportions ``p ~ Dirichlet(alpha * 1)`` over the
    partitions are drawn, and the class is cut at ``floor(cumsum(p) * class_size)``. Small
    ``alpha`` (e.g. 0.1) gives each partition few classes; large ``alpha`` (e.g. 1000)
    approaches an IID split. If a partition ends up with fewer than ``min_partition_size``
    samples, the whole draw is repeated, at most ``max_tries`` times.

    Parameters
    ----------
    labels
        1-D integer class labels, one per sample.
    num_partitions
        Number of partitions.
    alpha
        Concentration of the symmetric Dirichlet distribution, greater than 0.
    rng
        Source of the shuffles and the Dirichlet draws.
    min_partition_size
        Least number of samples every partition must receive.
    self_balancing
        If true, a partition that already holds at least ``len(labels) / num_partitions``
        samples gets no share of the classes that follow (Flower's ``self_balancing``), which
        keeps partition sizes closer together.
    max_tries
        How many draws to make before giving up on ``min_partition_size``.

    Returns
    -------
    list of numpy.ndarray
        One sorted ``int64`` index array per partition.

    Raises
    ------
    ConfigError
        If ``labels`` is not a non-empty 1-D integer array, ``num_partitions < 1``,
        ``alpha`` is not a finite number greater than 0, ``min_partition_size < 0``,
        ``max_tries < 1``, ``num_partitions * min_partition_size`` exceeds the number of
        samples, ``rng`` is not a ``numpy.random.Generator``, or no draw in ``max_tries``
        gave every partition ``min_partition_size`` samples.
    """
    y = check_labels(labels)
    num_partitions = check_int("num_partitions", num_partitions, minimum=1)
    alpha = check_positive("alpha", alpha)
    min_partition_size = check_int("min_partition_size", min_partition_size, minimum=0)
    max_tries = check_int("max_tries", max_tries, minimum=1)
    rng = check_rng(rng)
    _check_enough(y.size, num_partitions, min_partition_size, "samples")

    _, class_of = np.unique(y, return_inverse=True)
    by_class = [
        np.flatnonzero(class_of == c).astype(np.int64) for c in range(int(class_of.max()) + 1)
    ]
    concentration = np.full(num_partitions, alpha)
    balance_cap = y.size / num_partitions
    sizes = np.zeros(num_partitions, dtype=np.int64)
    for _ in range(max_tries):
        chunks: list[list[NDArray[np.int64]]] = [[] for _ in range(num_partitions)]
        sizes[:] = 0
        for members in by_class:
            shuffled = rng.permutation(members)
            proportions = rng.dirichlet(concentration)
            if self_balancing:
                capped = np.where(sizes < balance_cap, proportions, 0.0)
                # Draws can underflow to zero for tiny alpha; then the class is split freely.
                if capped.sum() > 0:
                    proportions = capped / capped.sum()
            cuts = (np.cumsum(proportions) * shuffled.size).astype(np.int64)[:-1]
            for k, piece in enumerate(np.split(shuffled, cuts)):
                chunks[k].append(piece)
                sizes[k] += piece.size
        if int(sizes.min()) >= min_partition_size:
            return _sorted_parts([np.concatenate(parts) for parts in chunks])
    raise ConfigError(
        f"dirichlet_partition: no draw in {max_tries} tries gave all {num_partitions} "
        f"partitions at least {min_partition_size} samples (alpha={alpha}); raise alpha or "
        "max_tries, or lower min_partition_size or num_partitions"
    )


def shard_partition(
    labels: ArrayLike,
    num_partitions: int,
    shards_per_partition: int,
    rng: np.random.Generator,
) -> Partitions:
    """Pathological non-IID split of McMahan et al. (2017): a few label-sorted shards each.

    The samples are sorted by label (ties in random order), cut into
    ``num_partitions * shards_per_partition`` contiguous shards whose sizes differ by at most
    one, and each partition receives ``shards_per_partition`` shards chosen at random without
    replacement. When every class has at least as many samples as a shard, a shard spans at
    most two labels, so a partition sees at most ``2 * shards_per_partition`` labels.

    Parameters
    ----------
    labels
        1-D integer class labels, one per sample.
    num_partitions
        Number of partitions.
    shards_per_partition
        Number of shards each partition receives (2 in McMahan et al.).
    rng
        Source of the tie order and of the shard assignment.

    Returns
    -------
    list of numpy.ndarray
        One sorted ``int64`` index array per partition.

    Raises
    ------
    ConfigError
        If ``labels`` is not a non-empty 1-D integer array, ``num_partitions < 1``,
        ``shards_per_partition < 1``, there are fewer samples than shards, or ``rng`` is not
        a ``numpy.random.Generator``.
    """
    y = check_labels(labels)
    num_partitions = check_int("num_partitions", num_partitions, minimum=1)
    shards_per_partition = check_int("shards_per_partition", shards_per_partition, minimum=1)
    rng = check_rng(rng)
    _check_enough(y.size, num_partitions, shards_per_partition, "single-sample shards")

    shuffled = rng.permutation(y.size).astype(np.int64)
    by_label = shuffled[np.argsort(y[shuffled], kind="stable")]
    shards = np.array_split(by_label, num_partitions * shards_per_partition)
    owner = rng.permutation(len(shards)).reshape(num_partitions, shards_per_partition)
    return _sorted_parts([np.concatenate([shards[s] for s in owned]) for owned in owner])


def power_law_sizes(
    num_samples: int, num_partitions: int, exponent: float, min_partition_size: int
) -> NDArray[np.int64]:
    """Partition sizes by rank, largest first: ``min_partition_size`` plus a Zipf share.

    See :func:`power_law_partition` for the rule. Arguments are assumed valid.
    """
    ranks = np.arange(1, num_partitions + 1, dtype=np.float64)
    weights = ranks**-exponent
    spare = num_samples - num_partitions * min_partition_size
    ideal = spare * weights / weights.sum()
    extra = np.floor(ideal).astype(np.int64)
    # Largest remainder; a stable sort keeps ties in rank order so sizes stay non-increasing.
    leftover = spare - int(extra.sum())
    by_remainder = np.argsort(-(ideal - extra), kind="stable")
    extra[by_remainder[:leftover]] += 1
    sizes: NDArray[np.int64] = extra + min_partition_size
    return sizes


def power_law_partition(
    num_samples: int,
    num_partitions: int,
    rng: np.random.Generator,
    *,
    exponent: float = 1.0,
    min_partition_size: int = 1,
) -> Partitions:
    """Split the samples IID into partitions whose sizes follow a power law of their rank.

    Procedure: every partition first gets ``min_partition_size`` samples. The remaining
    ``R = num_samples - num_partitions * min_partition_size`` samples are shared out in
    proportion to ``r ** -exponent`` for ranks ``r = 1 .. num_partitions`` (a Zipf law;
    ``exponent=0`` gives equal sizes), rounding by largest remainder so that the sizes sum to
    ``num_samples`` exactly. The ranks are then assigned to partitions in random order, the
    sample indices are shuffled, and cut into pieces of those sizes. Sizes are deterministic
    given the arguments; only which partition is large, and which samples it holds, is random.
    Combine with a label-skewed partitioner when both quantity and label skew are wanted.

    Parameters
    ----------
    num_samples
        Number of samples to partition (indices ``0 .. num_samples - 1``).
    num_partitions
        Number of partitions.
    rng
        Source of the rank order and the shuffle.
    exponent
        Power-law exponent, at least 0; larger means more skewed sizes.
    min_partition_size
        Least number of samples in each partition, at least 1.

    Returns
    -------
    list of numpy.ndarray
        One sorted ``int64`` index array per partition.

    Raises
    ------
    ConfigError
        If ``num_partitions < 1``, ``min_partition_size < 1``, ``exponent`` is negative or
        not finite, ``num_samples < num_partitions * min_partition_size``, or ``rng`` is not a
        ``numpy.random.Generator``.
    """
    num_samples = check_int("num_samples", num_samples, minimum=1)
    num_partitions = check_int("num_partitions", num_partitions, minimum=1)
    exponent = check_non_negative("exponent", exponent)
    min_partition_size = check_int("min_partition_size", min_partition_size, minimum=1)
    rng = check_rng(rng)
    _check_enough(num_samples, num_partitions, min_partition_size, "samples")

    sizes = power_law_sizes(num_samples, num_partitions, exponent, min_partition_size)
    sizes = sizes[rng.permutation(num_partitions)]
    order = rng.permutation(num_samples).astype(np.int64)
    return _sorted_parts(np.split(order, np.cumsum(sizes)[:-1]))
