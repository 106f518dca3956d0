"""Fed-Heart-Disease loading, against the UCI files kept beside the project for tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from corolla.core._errors import ConfigError
from corolla.data import HEART_SITES, load_fed_heart_disease

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "fed-heart-disease"

pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason="shared Fed-Heart-Disease data absent")


def test_sites_have_flamby_sizes_features_and_standardised_training_data():
    pytest.importorskip("sklearn")

    sites = load_fed_heart_disease(DATA)

    assert [s.name.split("/")[1] for s in sites] == list(HEART_SITES)
    assert [len(s.y_train) + len(s.y_test) for s in sites] == [303, 261, 46, 130]
    assert all(s.num_features == 13 for s in sites)
    for site in sites:
        np.testing.assert_allclose(site.x_train.mean(axis=0), 0, atol=1e-5)
        assert set(np.unique(site.y_train)) <= {0, 1}


def test_splits_have_flamby_train_and_test_sizes():
    pytest.importorskip("sklearn")

    sites = load_fed_heart_disease(DATA)

    # FLamby's README: train/test 199/104, 172/89, 30/16, 85/45.
    assert [(len(s.y_train), len(s.y_test)) for s in sites] == [
        (199, 104),
        (172, 89),
        (30, 16),
        (85, 45),
    ]


def test_site_normalization_uses_the_unbiased_std_of_the_site_training_rows():
    pytest.importorskip("sklearn")

    sites = load_fed_heart_disease(DATA)

    for site in sites:
        std = site.x_train.std(axis=0, ddof=1)
        varying = std > 0  # Switzerland's cholesterol is constant (all zeros)
        np.testing.assert_allclose(std[varying], 1, atol=1e-5)


def test_pooled_normalization_standardises_all_training_rows_together():
    pytest.importorskip("sklearn")

    sites = load_fed_heart_disease(DATA, normalization="pooled")

    x = np.concatenate([s.x_train for s in sites]).astype(np.float64)
    np.testing.assert_allclose(x.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(x.std(axis=0, ddof=1), 1, atol=1e-5)
    assert abs(float(sites[2].x_train.mean(axis=0).max())) > 0.1  # sites differ


def test_unknown_normalization_is_a_config_error():
    pytest.importorskip("sklearn")

    with pytest.raises(ConfigError, match="normalization"):
        load_fed_heart_disease(DATA, normalization="global")  # type: ignore[arg-type]


def test_loading_is_deterministic():
    pytest.importorskip("sklearn")

    first, second = load_fed_heart_disease(DATA), load_fed_heart_disease(DATA)

    for a, b in zip(first, second):
        np.testing.assert_array_equal(a.x_test, b.x_test)


def test_missing_directory_names_the_file(tmp_path):
    pytest.importorskip("sklearn")

    with pytest.raises(ConfigError, match=r"processed\.cleveland\.data not found"):
        load_fed_heart_disease(tmp_path)
