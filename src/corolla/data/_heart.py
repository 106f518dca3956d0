"""Fed-Heart-Disease: the UCI Heart Disease data of four hospitals, as FLamby prepares it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from corolla.core import ConfigError, MissingExtraError

from ._dataset import Dataset

__all__ = ["HEART_SITES", "load_fed_heart_disease"]

#: The four hospitals, in FLamby's order, and the file of each.
HEART_SITES = ("cleveland", "hungarian", "switzerland", "va")

_KEPT_COLUMNS = [*range(10), 13]  # slope, ca and thal (10, 11, 12) are dropped
_CP, _RESTECG = 2, 6


def _read_site(path: Path) -> np.ndarray:
    rows = []
    for number, line in enumerate(path.read_text(encoding="ascii").splitlines(), start=1):
        if not line.strip():
            continue
        values = line.strip().split(",")
        if len(values) != 14:
            raise ConfigError(f"{path}:{number}: expected 14 values, found {len(values)}")
        kept = [values[i] for i in _KEPT_COLUMNS]
        if "?" in kept:
            continue
        rows.append([float(v) for v in kept])
    return np.asarray(rows, dtype=np.float64)


def _features(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-hot cp (levels 1-4) and restecg (0-2), dropping each first level: 13 features."""
    cp = table[:, _CP].astype(int)
    restecg = table[:, _RESTECG].astype(int)
    plain = [i for i in range(10) if i not in (_CP, _RESTECG)]
    columns = [table[:, plain]]
    columns.append(np.stack([(cp == level) for level in (2, 3, 4)], axis=1))
    columns.append(np.stack([(restecg == level) for level in (1, 2)], axis=1))
    x = np.concatenate(columns, axis=1).astype(np.float64)
    y = (table[:, 10] > 0).astype(np.int64)
    return x, y


def _standardize(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    scaled: np.ndarray = (x - mean) / std
    return scaled.astype(np.float32)


def _statistics(x_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FLamby's statistics: the mean and the unbiased (``torch.std``) standard deviation.

    FLamby divides by ``std + 1e-9``; a constant column (Switzerland's cholesterol is all
    zeros) is left unscaled here instead, which gives the same zeros without the risk of a
    1e9 factor on a test value that differs from the constant.
    """
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0, ddof=1)
    std[std == 0] = 1.0
    return mean, std


def load_fed_heart_disease(
    directory: str | Path,
    *,
    seed: int = 43,
    normalization: Literal["site", "pooled"] = "site",
) -> list[Dataset]:
    """The four hospitals of Fed-Heart-Disease, one :class:`Dataset` each.

    Reads the UCI files ``processed.<site>.data`` from ``directory`` and applies FLamby's
    preprocessing (du Terrail et al., 2022; ``flamby/datasets/fed_heart_disease/dataset.py``):
    drop columns slope, ca and thal; drop rows with a missing value; one-hot encode cp and
    restecg dropping the first level (13 features); label ``num > 0``; per site, a 66/34
    train/test split (``train_test_split(random_state=seed)``, 43 in FLamby), stratified by
    label when each class has more than two rows (not in Switzerland, which has one negative
    row). Sites keep 303, 261, 46 and 130 rows.

    Parameters
    ----------
    directory
        Folder holding the four ``processed.<site>.data`` files.
    seed
        ``random_state`` of the per-site split.
    normalization
        ``"site"`` (FLamby's federated datasets): each site standardised with the mean and
        the unbiased standard deviation of its own training rows. ``"pooled"`` (FLamby's
        ``FedHeartDisease(pooled=True)``): every site standardised with the statistics of all
        sites' training rows together, which is what FLamby's pooled baseline trains on.

    Raises
    ------
    ConfigError
        If a file is missing or malformed, or ``normalization`` is unknown.
    MissingExtraError
        If scikit-learn (extra ``sklearn``) is not installed.
    """
    if normalization not in ("site", "pooled"):
        raise ConfigError(f"normalization must be 'site' or 'pooled', got {normalization!r}")
    try:
        from sklearn.model_selection import train_test_split
    except ImportError as exc:
        raise MissingExtraError("scikit-learn", "sklearn") from exc
    splits = []
    for site in HEART_SITES:
        path = Path(directory) / f"processed.{site}.data"
        if not path.is_file():
            raise ConfigError(f"Fed-Heart-Disease file {path} not found")
        x, y = _features(_read_site(path))
        # FLamby stratifies only when every class has more than two rows.
        stratify = y if np.bincount(y, minlength=2).min() > 2 else None
        splits.append(train_test_split(x, y, test_size=0.34, random_state=seed, stratify=stratify))
    pooled = _statistics(np.concatenate([split[0] for split in splits]))
    sites = []
    for site, (x_train, x_test, y_train, y_test) in zip(HEART_SITES, splits):
        mean, std = pooled if normalization == "pooled" else _statistics(x_train)
        sites.append(
            Dataset(
                x_train=_standardize(x_train, mean, std),
                y_train=y_train.astype(np.int64),
                x_test=_standardize(x_test, mean, std),
                y_test=y_test.astype(np.int64),
                num_classes=2,
                name=f"fed-heart-disease/{site}",
            )
        )
    return sites
