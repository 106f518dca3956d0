"""Component references: module:attribute, loaded through an optional adapter."""

from __future__ import annotations

import pickle

import pytest

from corolla.core import AppLoadError
from corolla.project import ComponentRef

ADAPTERS = "tests.project.flower_apps"


@pytest.fixture
def package(tmp_path):
    (tmp_path / "loader_demo_mod.py").write_text("app = 'the app'\n")
    return str(tmp_path)


def test_a_reference_without_adapter_loads_the_attribute(package):
    assert ComponentRef("loader_demo_mod:app", package).load() == "the app"


def test_the_adapter_is_called_with_the_loaded_component(package):
    ref = ComponentRef("loader_demo_mod:app", package, f"{ADAPTERS}:tag_adapter")

    assert ref.load() == ("adapted", "the app")


def test_a_reference_with_adapter_survives_pickling(package):
    ref = ComponentRef("loader_demo_mod:app", package, f"{ADAPTERS}:tag_adapter")

    copy = pickle.loads(pickle.dumps(ref))

    assert copy == ref and copy.load() == ("adapted", "the app")


@pytest.mark.parametrize(
    ("adapter", "message"),
    [
        ("no_such_adapter_module:adapt", "cannot load adapter 'no_such_adapter_module:adapt'"),
        (f"{ADAPTERS}:missing", f"cannot load adapter '{ADAPTERS}:missing'"),
        ("not-a-reference", "cannot load adapter 'not-a-reference'.*module:attribute"),
        (f"{ADAPTERS}:not_callable", "is a int, not a function"),
        (
            f"{ADAPTERS}:failing_adapter",
            "could not adapt component 'loader_demo_mod:app': TypeError: cannot adapt",
        ),
    ],
)
def test_a_bad_adapter_is_an_app_load_error_naming_it(package, adapter, message):
    ref = ComponentRef("loader_demo_mod:app", package, adapter)

    with pytest.raises(AppLoadError, match=message):
        ref.load()


def test_a_missing_component_fails_before_its_adapter_is_tried(package):
    ref = ComponentRef("loader_demo_mod:missing", package, "no_such_adapter_module:adapt")

    with pytest.raises(AppLoadError, match="no attribute 'missing'"):
        ref.load()
