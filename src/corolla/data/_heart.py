"""Fed-Heart-Disease: the UCI Heart Disease data of four hospitals, as FLamby prepares it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from corolla.core._errors import ConfigError, MissingExtraError

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


def load_fed_heart_disease(directory: str | Path, *, seed: int = 43) -> list[Dataset]:
    """The four hospitals of Fed-Heart-Disease, one :class:`Dataset` each.

    Reads the UCI files ``processed.<site>.data`` from ``directory`` and applies FLamby's
    preprocessing (du Terrail et al., 2022): drop columns slope, ca and thal; drop rows with
    a missing value; one-hot encode cp and restecg dropping the first level (13 features);
    label ``num > 0``; per site, a stratified 66/34 train/test split
    (``train_test_split(random_state=seed)``, 43 in FLamby; unstratified for a site with
    fewer than two rows of a class, as Switzerland has one negative row); standardise each
    site with its own training mean and standard deviation. Sites keep 303, 261, 46 and 130 rows.

    Raises
    ------
    ConfigError
        If a file is missing or malformed.
    MissingExtraError
        If scikit-learn (extra ``sklearn``) is not installed.
    """
    try:
        from sklearn.model_selection import train_test_split
    except ImportError as exc:
        raise MissingExtraError("scikit-learn", "sklearn") from exc
    sites = []
    for site in HEART_SITES:
        path = Path(directory) / f"processed.{site}.data"
        if not path.is_file():
            raise ConfigError(f"Fed-Heart-Disease file {path} not found")
        x, y = _features(_read_site(path))
        # Switzerland has a single negative row: a stratified split needs two per class.
        stratify = y if np.bincount(y, minlength=2).min() >= 2 else None
        x_train, x_test, y_train, y_test = train_test_split(
            x, y, test_size=0.34, random_state=seed, stratify=stratify
        )
        mean = x_train.mean(axis=0)
        std = x_train.std(axis=0)
        std[std == 0] = 1.0
        sites.append(
            Dataset(
                x_train=((x_train - mean) / std).astype(np.float32),
                y_train=y_train.astype(np.int64),
                x_test=((x_test - mean) / std).astype(np.float32),
                y_test=y_test.astype(np.int64),
                num_classes=2,
                name=f"fed-heart-disease/{site}",
            )
        )
    return sites
