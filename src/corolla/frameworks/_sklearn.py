"""scikit-learn adapter: a linear model's ``coef_`` and ``intercept_`` <-> ArrayRecord.

scikit-learn is the optional extra ``sklearn``; it is imported when a function here is
called, never when :mod:`corolla.frameworks` is imported.

A record holds two arrays: ``"coef"`` (``coef_``: shape ``(n_features,)`` for a single-target
regressor, ``(rows, n_features)`` otherwise, one row per class, or a single row for two
classes) and ``"intercept"`` (``intercept_``, one entry per row of ``coef``; a regressor's
scalar intercept becomes an array of one element). Every node must therefore produce the
same shapes and dtypes: give an unfitted model its classes with
:func:`init_sklearn_linear`, and train with ``partial_fit(..., classes=...)`` or a
``warm_start`` fit on data of the dtype it was initialized with.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

from ..core import ArrayRecord, ConfigError, MissingExtraError, RecordError

__all__ = ["arrays_from_sklearn", "init_sklearn_linear", "set_sklearn_arrays"]

COEF = "coef"
INTERCEPT = "intercept"

_SUPPORTED = (
    "linear models with coef_ and intercept_ (LogisticRegression, SGDClassifier, "
    "SGDRegressor, Perceptron, LinearRegression, Ridge, Lasso, LinearSVC, ...)"
)


def _require_sklearn() -> None:
    try:
        import sklearn  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError("scikit-learn", "sklearn") from exc


def _is_linear(estimator: object) -> bool:
    # scikit-learn has no public marker of linear models; its linear models live in
    # sklearn.linear_model (plus LinearSVC/LinearSVR), and subclasses keep those in their MRO.
    for cls in type(estimator).__mro__:
        module = getattr(cls, "__module__", "") or ""
        if module.startswith("sklearn.linear_model."):
            return True
        if module.startswith("sklearn.svm.") and cls.__name__ in ("LinearSVC", "LinearSVR"):
            return True
    return False


def _check_supported(estimator: object, function: str) -> None:
    if _is_linear(estimator):
        return
    hint = (
        " (for a Pipeline, pass its final step: pipeline[-1])"
        if hasattr(estimator, "steps")
        else ""
    )
    raise ConfigError(
        f"{function} does not support {type(estimator).__name__}{hint}; it handles {_SUPPORTED}"
    )


def _check_averaging(estimator: Any, function: str) -> None:
    # Averaged SGD keeps training from private copies of the coefficients (_standard_coef)
    # and only reports their average in coef_, so coefficients set from outside are ignored.
    if getattr(estimator, "average", False):
        raise ConfigError(
            f"{function} does not support {type(estimator).__name__}(average="
            f"{estimator.average!r}): averaged SGD trains from private copies of coef_ that "
            "cannot be set; use average=False"
        )


def _dense(name: str, value: Any) -> np.ndarray[Any, Any]:
    toarray = getattr(value, "toarray", None)
    if callable(toarray):  # a scipy.sparse matrix, after estimator.sparsify()
        value = toarray()
    array = np.asarray(value)
    if array.dtype.kind != "f":
        raise ConfigError(f"{name} has dtype {array.dtype}, not a float dtype")
    return array


def arrays_from_sklearn(estimator: Any, *, copy: bool = False) -> ArrayRecord:
    """A linear model's ``coef_`` and ``intercept_`` as a record ``{"coef", "intercept"}``.

    Parameters
    ----------
    estimator
        A fitted linear model, or one prepared with :func:`init_sklearn_linear`.
    copy
        By default the record views the estimator's arrays (a sparsified ``coef_`` is made
        dense, which copies it). An in-place update of the estimator (``partial_fit``) then
        shows through the record; ``copy=True`` takes a snapshot.

    Returns
    -------
    ArrayRecord
        ``"coef"`` and ``"intercept"`` (at least one-dimensional), with the estimator's
        dtypes.

    Raises
    ------
    MissingExtraError
        If scikit-learn is not installed (extra ``sklearn``).
    ConfigError
        If the estimator is not a supported linear model, or is not fitted (fit it, or call
        :func:`init_sklearn_linear`).
    """
    _require_sklearn()
    _check_supported(estimator, "arrays_from_sklearn")
    coef = getattr(estimator, "coef_", None)
    intercept = getattr(estimator, "intercept_", None)
    if coef is None or intercept is None:
        raise ConfigError(
            f"{type(estimator).__name__} is not fitted: it has no coef_ and intercept_ yet; "
            "fit it, or give it zero coefficients with init_sklearn_linear(estimator, "
            "n_features, classes)"
        )
    arrays = {
        COEF: _dense("coef_", coef),
        INTERCEPT: np.atleast_1d(_dense("intercept_", intercept)),
    }
    if copy:
        arrays = {name: array.copy() for name, array in arrays.items()}
    return ArrayRecord(arrays)


def _expected_rows(estimator: Any) -> int | None:
    classes = getattr(estimator, "classes_", None)
    if classes is None:
        return None
    return 1 if len(classes) == 2 else len(classes)


def _check_fit(estimator: Any, coef: np.ndarray[Any, Any], intercept: np.ndarray[Any, Any]) -> None:
    name = type(estimator).__name__
    if coef.ndim not in (1, 2) or coef.dtype.kind != "f":
        raise RecordError(
            f"'coef' must be a 1-D or 2-D float array, got {coef.dtype}{list(coef.shape)}"
        )
    rows = 1 if coef.ndim == 1 else coef.shape[0]
    if intercept.ndim != 1 or intercept.shape[0] != rows or intercept.dtype.kind != "f":
        raise RecordError(
            f"'intercept' must be a 1-D float array with one entry per row of 'coef' ({rows}), "
            f"got {intercept.dtype}{list(intercept.shape)}"
        )
    n_features = getattr(estimator, "n_features_in_", None)
    if n_features is not None and coef.shape[-1] != n_features:
        raise RecordError(f"'coef' has {coef.shape[-1]} features but {name} expects {n_features}")
    expected = _expected_rows(estimator)
    if expected is not None and rows != expected:
        raise RecordError(
            f"'coef' has {rows} rows but {name} with {len(estimator.classes_)} classes "
            f"needs {expected}"
        )


def _writable(array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    # Records hold read-only arrays, and scikit-learn updates coef_ in place (SGD).
    return np.array(array, dtype=array.dtype.newbyteorder("="), order="C", copy=True)


def set_sklearn_arrays(estimator: Any, record: ArrayRecord) -> None:
    """Set a linear model's ``coef_`` and ``intercept_`` from a record, in place.

    The arrays are copied into fresh, writable memory the estimator owns, with the
    record's dtypes. A classifier must already know its classes (it was fitted, or
    prepared with :func:`init_sklearn_linear`) to predict.

    Raises
    ------
    MissingExtraError
        If scikit-learn is not installed (extra ``sklearn``).
    ConfigError
        If the estimator is not a supported linear model, or is an averaged SGD model
        (``average`` set), which would keep training from its own private coefficients.
    RecordError
        If the record's names are not exactly ``"coef"`` and ``"intercept"``, or their
        shapes do not fit the estimator (features, classes) or each other; the estimator
        is then unchanged.
    """
    _require_sklearn()
    _check_supported(estimator, "set_sklearn_arrays")
    _check_averaging(estimator, "set_sklearn_arrays")
    if sorted(record) != [COEF, INTERCEPT]:
        raise RecordError(
            f"a scikit-learn record holds exactly 'coef' and 'intercept', got {list(record)}"
        )
    coef, intercept = record[COEF], record[INTERCEPT]
    _check_fit(estimator, coef, intercept)
    estimator.coef_ = _writable(coef)
    estimator.intercept_ = _writable(intercept)
    if getattr(estimator, "n_features_in_", None) is None:
        estimator.n_features_in_ = coef.shape[-1]


def init_sklearn_linear(
    estimator: Any,
    n_features: int,
    classes: Iterable[Any] | None = None,
    *,
    dtype: npt.DTypeLike = np.float64,
) -> None:
    """Give an unfitted linear model zero coefficients (and a classifier its classes).

    Afterwards the estimator can be sent (:func:`arrays_from_sklearn`), receive arrays
    (:func:`set_sklearn_arrays`), predict, and train from them: ``partial_fit`` continues
    from ``coef_``, and so does ``fit`` with ``warm_start=True``. Setting every class up
    front keeps the arrays' shape the same on nodes whose data lack some classes.

    Parameters
    ----------
    n_features
        Number of input features.
    classes
        For a classifier, every class label (at least two, no repeats); they are stored
        sorted in ``classes_``, as ``fit`` would. For a regressor, None.
    dtype
        Float dtype of the coefficients; train on data of this dtype (scikit-learn
        otherwise refits in the data's dtype and the shapes or dtypes of updates differ).

    Raises
    ------
    MissingExtraError
        If scikit-learn is not installed (extra ``sklearn``).
    ConfigError
        If the estimator is not a supported linear model (averaged SGD and the ridge
        classifiers are not supported here), ``n_features`` < 1, ``dtype`` is
        not a float dtype, or ``classes`` is missing for a classifier, given for a
        regressor, repeats a label or has fewer than two.
    """
    _require_sklearn()
    from sklearn.base import is_classifier

    _check_supported(estimator, "init_sklearn_linear")
    _check_averaging(estimator, "init_sklearn_linear")
    name = type(estimator).__name__
    if any(cls.__name__ == "_RidgeClassifierMixin" for cls in type(estimator).__mro__):
        raise ConfigError(
            f"init_sklearn_linear does not support {name}: it cannot predict before fit "
            "(it needs a fitted label binarizer) nor train from given coefficients"
        )
    if (
        isinstance(n_features, bool)
        or not isinstance(n_features, int | np.integer)
        or n_features < 1
    ):
        raise ConfigError(f"n_features must be an int >= 1, got {n_features!r}")
    try:
        float_dtype = np.dtype(dtype)
    except TypeError as exc:
        raise ConfigError(f"dtype must be a float dtype, got {dtype!r}") from exc
    if float_dtype.kind != "f":
        raise ConfigError(f"dtype must be a float dtype, got {float_dtype}")
    if is_classifier(estimator):
        if classes is None:
            raise ConfigError(f"{name} is a classifier: pass all its class labels as classes")
        labels = np.asarray(list(classes))
        unique = np.unique(labels)
        if labels.ndim != 1 or unique.size != labels.size:
            raise ConfigError(f"classes must be distinct labels, got {labels.tolist()}")
        if unique.size < 2:
            raise ConfigError(f"a classifier needs at least two classes, got {labels.tolist()}")
        rows = 1 if unique.size == 2 else int(unique.size)
        estimator.classes_ = unique
        estimator.coef_ = np.zeros((rows, int(n_features)), dtype=float_dtype)
        estimator.intercept_ = np.zeros(rows, dtype=float_dtype)
    else:
        if classes is not None:
            raise ConfigError(f"{name} is not a classifier: leave classes as None")
        estimator.coef_ = np.zeros(int(n_features), dtype=float_dtype)
        estimator.intercept_ = np.zeros(1, dtype=float_dtype)
    estimator.n_features_in_ = int(n_features)
