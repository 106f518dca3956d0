"""Fashion-MNIST from its IDX files (as Debian's ``dataset-fashion-mnist`` installs them)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from corolla.core import ConfigError

from ._dataset import Dataset

__all__ = ["FASHION_MNIST_DIR", "load_fashion_mnist"]

#: Where Debian's ``dataset-fashion-mnist`` package puts the files.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

_FILES = {
    "x_train": ("train-images-idx3-ubyte.gz", 2051),
    "y_train": ("train-labels-idx1-ubyte.gz", 2049),
    "x_test": ("t10k-images-idx3-ubyte.gz", 2051),
    "y_test": ("t10k-labels-idx1-ubyte.gz", 2049),
}


def _read_idx(path: Path, magic: int) -> np.ndarray:
    try:
        data = gzip.decompress(path.read_bytes())
    except FileNotFoundError:
        raise ConfigError(
            f"{path} not found: install Fashion-MNIST with `apt-get install "
            "dataset-fashion-mnist`, or pass the directory holding its IDX files"
        ) from None
    except (OSError, EOFError) as exc:
        raise ConfigError(f"{path} is not a gzipped IDX file: {exc}") from exc
    header = np.frombuffer(data[:4], dtype=">u4")[0]
    if header != magic:
        raise ConfigError(f"{path}: IDX magic {header}, expected {magic}")
    ndim = magic & 0xFF
    dims = [int(d) for d in np.frombuffer(data[4 : 4 + 4 * ndim], dtype=">u4")]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ConfigError(f"{path}: {body.size} values, the header announces {dims}")
    return body.reshape(dims)


def load_fashion_mnist(directory: str | Path = FASHION_MNIST_DIR) -> Dataset:
    """Fashion-MNIST (Xiao et al., 2017): 60,000 training and 10,000 test images of 28x28
    pixels in 10 classes, as float32 rows of 784 values in [0, 1] (the official split).

    Raises
    ------
    ConfigError
        If a file is missing or malformed.
    """
    arrays = {
        key: _read_idx(Path(directory) / name, magic) for key, (name, magic) in _FILES.items()
    }
    return Dataset(
        x_train=(arrays["x_train"].reshape(-1, 784) / np.float32(255)).astype(np.float32),
        y_train=arrays["y_train"].astype(np.int64),
        x_test=(arrays["x_test"].reshape(-1, 784) / np.float32(255)).astype(np.float32),
        y_test=arrays["y_test"].astype(np.int64),
        num_classes=10,
        name="fashion-mnist",
    )
