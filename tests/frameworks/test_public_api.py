from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import corolla.frameworks
from corolla.core import ArrayRecord, MissingExtraError
from corolla.frameworks import (
    arrays_from_sklearn,
    arrays_from_torch,
    arrays_to_torch,
    init_sklearn_linear,
    load_torch_arrays,
    set_sklearn_arrays,
)


def test_public_names_are_exactly_the_intended_ones() -> None:
    assert sorted(corolla.frameworks.__all__) == [
        "arrays_from_numpy",
        "arrays_from_sklearn",
        "arrays_from_torch",
        "arrays_to_numpy",
        "arrays_to_torch",
        "init_sklearn_linear",
        "load_torch_arrays",
        "set_sklearn_arrays",
    ]
    for name in corolla.frameworks.__all__:
        assert hasattr(corolla.frameworks, name)


def test_importing_does_not_import_optional_dependencies() -> None:
    code = (
        "import corolla.frameworks, sys; "
        "print(sorted(m for m in ('torch', 'sklearn') if m in sys.modules))"
    )

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert out.stdout.strip() == "[]"


RECORD = ArrayRecord({"w": np.zeros(2)})


@pytest.mark.parametrize(
    "call",
    [
        lambda: arrays_from_torch({}),
        lambda: arrays_to_torch(RECORD),
        lambda: load_torch_arrays(object(), RECORD),  # type: ignore[arg-type]
    ],
    ids=["arrays_from_torch", "arrays_to_torch", "load_torch_arrays"],
)
def test_torch_functions_name_the_extra_when_torch_is_missing(
    monkeypatch: pytest.MonkeyPatch, call: object
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail

    with pytest.raises(MissingExtraError, match=r"pip install 'corolla\[torch\]'") as info:
        call()  # type: ignore[operator]

    assert info.value.package == "torch"
    assert info.value.extra == "torch"
    assert isinstance(info.value.__cause__, ImportError)


@pytest.mark.parametrize(
    "call",
    [
        lambda: arrays_from_sklearn(object()),
        lambda: set_sklearn_arrays(object(), RECORD),
        lambda: init_sklearn_linear(object(), 2, [0, 1]),
    ],
    ids=["arrays_from_sklearn", "set_sklearn_arrays", "init_sklearn_linear"],
)
def test_sklearn_functions_name_the_extra_when_sklearn_is_missing(
    monkeypatch: pytest.MonkeyPatch, call: object
) -> None:
    monkeypatch.setitem(sys.modules, "sklearn", None)

    with pytest.raises(MissingExtraError, match=r"pip install 'corolla\[sklearn\]'") as info:
        call()  # type: ignore[operator]

    assert info.value.package == "scikit-learn"
    assert info.value.extra == "sklearn"
