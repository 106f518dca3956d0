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


@pytest.fixture
def framework_package(tmp_path):
    """A package ``fakefw`` defining an app class, and a module of apps made with it."""
    (tmp_path / "fakefw").mkdir()
    (tmp_path / "fakefw" / "__init__.py").write_text("")
    (tmp_path / "fakefw" / "apps.py").write_text("class App:\n    pass\n")
    (tmp_path / "framework_apps_mod.py").write_text(
        "import fakefw.apps\n\n"
        "class Derived(fakefw.apps.App):\n    pass\n\n"
        "made = fakefw.apps.App()\n"
        "derived = Derived()\n"
        "own = 'an app of its own'\n"
    )
    return str(tmp_path)


@pytest.mark.parametrize("attribute", ["made", "derived"])
def test_an_adapter_for_a_package_adapts_what_its_classes_made(framework_package, attribute):
    ref = ComponentRef(
        f"framework_apps_mod:{attribute}",
        framework_package,
        f"{ADAPTERS}:tag_adapter",
        adapter_for="fakefw",
    )

    tag, component = ref.load()

    assert tag == "adapted" and type(component).__mro__[-2].__module__ == "fakefw.apps"


def test_an_adapter_for_a_package_leaves_other_objects_without_importing_it(framework_package):
    # The adapter's module does not exist: loading it would fail.
    ref = ComponentRef(
        "framework_apps_mod:own", framework_package, "no_such_adapter_module:adapt", "fakefw"
    )

    assert ref.load() == "an app of its own"


def test_a_package_is_matched_by_name_not_by_prefix(framework_package):
    ref = ComponentRef("framework_apps_mod:made", framework_package, "no_such:adapt", "fake")

    assert type(ref.load()).__name__ == "App"
