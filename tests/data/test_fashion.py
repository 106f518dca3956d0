"""Fashion-MNIST's IDX reader, on files written by the test and on the Debian package."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from corolla.core._errors import ConfigError
from corolla.data import FASHION_MNIST_DIR, load_fashion_mnist


def _write(directory, images: np.ndarray, labels: np.ndarray, prefix: str) -> None:
    header = struct.pack(">IIII", 2051, len(images), 28, 28)
    (directory / f"{prefix}-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(header + images.tobytes())
    )
    header = struct.pack(">II", 2049, len(labels))
    (directory / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(header + labels.tobytes())
    )


def test_reads_idx_files_scaled_to_unit_range(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = np.array([0, 9, 3, 3, 1], dtype=np.uint8)
    _write(tmp_path, images, labels, "train")
    _write(tmp_path, images[:2], labels[:2], "t10k")

    data = load_fashion_mnist(tmp_path)

    assert data.x_train.shape == (5, 784) and data.x_train.dtype == np.float32
    np.testing.assert_allclose(data.x_train[1], images[1].reshape(-1) / 255, rtol=1e-6)
    assert data.y_test.tolist() == [0, 9]


def test_missing_and_corrupt_files_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\0\0\0\0"))
    with pytest.raises(ConfigError, match="IDX magic"):
        load_fashion_mnist(tmp_path)


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="dataset-fashion-mnist not installed")
def test_the_debian_package_has_the_official_split():
    data = load_fashion_mnist()

    assert (len(data.y_train), len(data.y_test)) == (60_000, 10_000)
    assert np.bincount(data.y_test).tolist() == [1000] * 10
