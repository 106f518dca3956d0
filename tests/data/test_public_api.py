from __future__ import annotations

import subprocess
import sys

import corolla.data


def test_public_names_are_exactly_the_intended_ones() -> None:
    assert sorted(corolla.data.__all__) == [
        "DATASET_NAMES",
        "Dataset",
        "FASHION_MNIST_DIR",
        "HEART_SITES",
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
    for name in corolla.data.__all__:
        assert hasattr(corolla.data, name)


def test_importing_does_not_import_optional_dependencies() -> None:
    # Importing corolla.data must stay cheap; the loaders import these on call.
    code = (
        "import corolla.data, sys; "
        "print(sorted(m for m in ('sklearn', 'mlxtend') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert out.stdout.strip() == "[]"
