from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

from corolla.core import ArrayRecord, ConfigError, RecordError
from corolla.frameworks import arrays_from_sklearn, init_sklearn_linear, set_sklearn_arrays

pytest.importorskip("sklearn")

from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import (
    LinearRegression,
    LogisticRegression,
    Ridge,
    RidgeClassifier,
    SGDClassifier,
    SGDRegressor,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from sklearn.tree import DecisionTreeClassifier

RNG = np.random.default_rng(0)
X = RNG.normal(size=(60, 4))
Y3 = np.arange(60) % 3
Y_REG = X @ np.array([1.0, -2.0, 0.5, 0.0]) + 3.0


def fitted_logistic(y: np.ndarray[Any, Any] = Y3) -> LogisticRegression:
    return LogisticRegression(max_iter=500).fit(X, y)


# arrays_from_sklearn


def test_record_holds_coef_and_intercept_of_a_fitted_model() -> None:
    model = fitted_logistic()

    record = arrays_from_sklearn(model)

    assert list(record) == ["coef", "intercept"]
    assert record["coef"].shape == (3, 4)
    assert record["intercept"].shape == (3,)
    assert record["coef"].dtype == np.float64
    assert np.array_equal(record["coef"], model.coef_)
    assert np.array_equal(record["intercept"], model.intercept_)


def test_the_record_views_the_estimator_unless_copied() -> None:
    model = fitted_logistic()

    view, snapshot = arrays_from_sklearn(model), arrays_from_sklearn(model, copy=True)

    assert np.shares_memory(view["coef"], model.coef_)
    assert np.shares_memory(view["intercept"], model.intercept_)
    assert not np.shares_memory(snapshot["coef"], model.coef_)
    assert snapshot == view


def test_a_binary_classifier_has_one_row() -> None:
    record = arrays_from_sklearn(fitted_logistic(Y3 > 0))

    assert record["coef"].shape == (1, 4)
    assert record["intercept"].shape == (1,)


@pytest.mark.parametrize("model_type", [LinearRegression, Ridge, SGDRegressor])
def test_a_regressors_intercept_is_an_array_of_one(model_type: type[Any]) -> None:
    model = model_type().fit(X, Y_REG)

    record = arrays_from_sklearn(model)

    assert record["coef"].shape == (4,)
    assert record["intercept"].shape == (1,)
    fresh = model_type()
    set_sklearn_arrays(fresh, record)
    assert np.allclose(fresh.predict(X), model.predict(X))


def test_a_sparsified_coef_is_made_dense() -> None:
    model = SGDClassifier(random_state=0).fit(X, Y3).sparsify()

    record = arrays_from_sklearn(model)

    assert isinstance(record["coef"], np.ndarray)
    assert np.array_equal(record["coef"], model.coef_.toarray())


def test_an_unfitted_model_points_to_init() -> None:
    with pytest.raises(ConfigError, match=r"LogisticRegression is not fitted.*init_sklearn_linear"):
        arrays_from_sklearn(LogisticRegression())


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (DecisionTreeClassifier().fit(X, Y3), "does not support DecisionTreeClassifier"),
        (object(), "does not support object"),
        (make_pipeline(StandardScaler(), LogisticRegression()), r"pipeline\[-1\]"),
    ],
)
def test_unsupported_estimators_are_rejected(model: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        arrays_from_sklearn(model)


def test_linear_svc_is_supported() -> None:
    model = LinearSVC().fit(X, Y3)

    assert arrays_from_sklearn(model)["coef"].shape == (3, 4)


# set_sklearn_arrays


def test_setting_arrays_reproduces_the_model() -> None:
    source = fitted_logistic()
    target = LogisticRegression()
    init_sklearn_linear(target, 4, [0, 1, 2])

    set_sklearn_arrays(target, arrays_from_sklearn(source))

    assert np.array_equal(target.predict_proba(X), source.predict_proba(X))


def test_set_arrays_are_writable_copies() -> None:
    record = arrays_from_sklearn(fitted_logistic(), copy=True)
    target = LogisticRegression()

    set_sklearn_arrays(target, record)

    assert target.coef_.flags.writeable
    assert not np.shares_memory(target.coef_, record["coef"])
    assert target.n_features_in_ == 4


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (ArrayRecord({"coef": np.zeros((3, 4))}), "exactly 'coef' and 'intercept'"),
        (
            ArrayRecord({"coef": np.zeros((3, 4)), "intercept": np.zeros(3), "x": np.zeros(1)}),
            "exactly 'coef' and 'intercept'",
        ),
        (ArrayRecord({"coef": np.zeros((3, 5)), "intercept": np.zeros(3)}), "5 features"),
        (ArrayRecord({"coef": np.zeros((2, 4)), "intercept": np.zeros(2)}), "3 classes needs 3"),
        (ArrayRecord({"coef": np.zeros((3, 4)), "intercept": np.zeros(2)}), "one entry per row"),
        (ArrayRecord({"coef": np.zeros((3, 4), int), "intercept": np.zeros(3)}), "float array"),
        (ArrayRecord({"coef": np.zeros((3, 4, 1)), "intercept": np.zeros(3)}), "1-D or 2-D"),
    ],
)
def test_records_that_do_not_fit_are_rejected_and_change_nothing(
    record: ArrayRecord, message: str
) -> None:
    model = fitted_logistic()
    before = arrays_from_sklearn(model, copy=True)

    with pytest.raises(RecordError, match=message):
        set_sklearn_arrays(model, record)

    assert arrays_from_sklearn(model) == before


def test_averaged_sgd_is_rejected() -> None:
    model = SGDClassifier(average=True, random_state=0).fit(X, Y3)

    with pytest.raises(ConfigError, match=r"average=True.*use average=False"):
        set_sklearn_arrays(model, arrays_from_sklearn(model))


# init_sklearn_linear


@pytest.mark.parametrize(
    ("classes", "rows"), [([0, 1], 1), ([2, 0, 1], 3), (["b", "a", "c", "d"], 4)]
)
def test_init_gives_zero_coefficients_of_the_fitted_shape(classes: list[Any], rows: int) -> None:
    model = SGDClassifier()

    init_sklearn_linear(model, 4, classes)

    record = arrays_from_sklearn(model)
    assert record["coef"].shape == (rows, 4)
    assert record["intercept"].shape == (rows,)
    assert not record["coef"].any()
    assert model.classes_.tolist() == sorted(classes)
    assert model.predict(X[:2]).tolist() == [sorted(classes)[0]] * 2


def test_init_matches_the_layout_fit_gives() -> None:
    model = LogisticRegression()
    init_sklearn_linear(model, 4, [0, 1, 2])

    initial = arrays_from_sklearn(model)
    fitted = arrays_from_sklearn(fitted_logistic())

    assert [(a.shape, a.dtype) for a in initial.values()] == [
        (a.shape, a.dtype) for a in fitted.values()
    ]


def test_partial_fit_keeps_the_layout_when_local_data_lack_classes() -> None:
    model = SGDClassifier(loss="log_loss", random_state=0)
    init_sklearn_linear(model, 4, range(10))

    model.partial_fit(X, Y3, classes=np.arange(10))  # only classes 0, 1, 2 present

    assert arrays_from_sklearn(model)["coef"].shape == (10, 4)
    assert model.coef_[:3].any()


def test_warm_start_fit_starts_from_the_set_coefficients() -> None:
    optimum = fitted_logistic()
    model = LogisticRegression(warm_start=True, max_iter=1)
    init_sklearn_linear(model, 4, [0, 1, 2])
    set_sklearn_arrays(model, arrays_from_sklearn(optimum))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, Y3)

    cold = LogisticRegression(max_iter=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        cold.fit(X, Y3)
    assert np.allclose(model.coef_, optimum.coef_, atol=1e-3)
    assert not np.allclose(cold.coef_, optimum.coef_, atol=1e-3)


def test_init_a_regressor() -> None:
    model = SGDRegressor(random_state=0)

    init_sklearn_linear(model, 4)
    model.partial_fit(X, Y_REG)

    record = arrays_from_sklearn(model)
    assert record["coef"].shape == (4,)
    assert record["intercept"].shape == (1,)


def test_init_in_float32() -> None:
    model = SGDClassifier()

    init_sklearn_linear(model, 4, [0, 1], dtype=np.float32)

    assert {a.dtype for a in arrays_from_sklearn(model).values()} == {np.dtype(np.float32)}


@pytest.mark.parametrize(
    ("model", "n_features", "classes", "kwargs", "message"),
    [
        (SGDClassifier(), 4, None, {}, "pass all its class labels"),
        (SGDRegressor(), 4, [0, 1], {}, "not a classifier"),
        (SGDClassifier(), 4, [1, 1, 2], {}, "distinct labels"),
        (SGDClassifier(), 4, [1], {}, "at least two classes"),
        (SGDClassifier(), 0, [0, 1], {}, "n_features must be an int >= 1"),
        (SGDClassifier(), 2.0, [0, 1], {}, "n_features must be an int >= 1"),
        (SGDClassifier(), 4, [0, 1], {"dtype": np.int64}, "float dtype"),
        (SGDClassifier(), 4, [0, 1], {"dtype": "nonsense"}, "float dtype"),
        (SGDClassifier(average=5), 4, [0, 1], {}, "average=5"),
        (RidgeClassifier(), 4, [0, 1], {}, "does not support RidgeClassifier"),
        (DecisionTreeClassifier(), 4, [0, 1], {}, "does not support DecisionTreeClassifier"),
    ],
)
def test_init_rejects_bad_arguments(
    model: Any, n_features: Any, classes: Any, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        init_sklearn_linear(model, n_features, classes, **kwargs)
    assert not hasattr(model, "coef_")
