"""Loading app components (``module:attribute``) from an app directory.

A component written for another framework (a Flower ``ClientApp``) is loaded through an
adapter: a ``module:function`` reference, imported when the component is, that turns the
loaded object into what Corolla calls. The adapter is named, not imported here, so this
layer stays below the packages that define adapters.

An adapter may be for one framework's objects only (``adapter_for="flwr"``): a Corolla
app whose ClientApp is a Flower ``ClientApp`` gets the Flower adapter, and one whose
ClientApp is Corolla's is loaded as it is, without importing the adapter (nor the other
framework, which need not be installed). Which framework made an object is read from the
modules that define its class and the classes it derives from.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
from pathlib import Path
from typing import Any

from ..core import AppLoadError

__all__ = ["ComponentRef", "load_component"]


@dataclasses.dataclass(frozen=True)
class ComponentRef:
    """Where to find an app component: ``module:attribute``, importable from ``search_path``,
    and the ``module:function`` ``adapter`` that wraps it, if any: every component, or,
    with ``adapter_for``, only an object of a class that package (``"flwr"``) defines, or
    derived from one.

    It is small and picklable, so worker processes can load the component themselves.
    """

    reference: str
    search_path: str | None = None
    adapter: str | None = None
    adapter_for: str | None = None

    def load(self) -> Any:
        """Import the module and return the attribute, passed through the adapter if any.

        Raises
        ------
        AppLoadError
            If the reference is malformed, the module fails to import, the attribute is
            missing, or the adapter cannot be imported, is not callable or fails.
        """
        component = load_component(self.reference, self.search_path)
        if self.adapter is None:
            return component
        if self.adapter_for is not None and not _made_by(component, self.adapter_for):
            return component
        return _adapted(component, self.reference, self.adapter)


def _made_by(component: Any, package: str) -> bool:
    """True if ``component``'s class, or a class it derives from, is defined in
    ``package`` or one of its subpackages."""
    return any(
        cls.__module__ == package or cls.__module__.startswith(package + ".")
        for cls in type(component).__mro__
    )


def _adapted(component: Any, reference: str, adapter: str) -> Any:
    try:
        adapt = load_component(adapter)
    except AppLoadError as exc:
        raise AppLoadError(
            f"cannot load adapter {adapter!r} of component {reference!r}: {exc}"
        ) from exc
    if not callable(adapt):
        raise AppLoadError(
            f"adapter {adapter!r} of component {reference!r} is a "
            f"{type(adapt).__name__}, not a function"
        )
    try:
        return adapt(component)
    except Exception as exc:
        raise AppLoadError(
            f"adapter {adapter!r} could not adapt component {reference!r}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def load_component(reference: str, search_path: str | Path | None = None) -> Any:
    """Import ``module:attribute``, with ``search_path`` first on ``sys.path``.

    Raises
    ------
    AppLoadError
        If the reference is malformed, the module fails to import, or the attribute is
        missing.
    """
    module_name, sep, attribute = reference.partition(":")
    if not sep or not module_name or not attribute:
        raise AppLoadError(f"component reference {reference!r} must look like 'module:attribute'")
    if search_path is not None:
        path = str(Path(search_path).resolve())
        if path not in sys.path:
            sys.path.insert(0, path)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise AppLoadError(
            f"cannot import module {module_name!r} of component {reference!r}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError as exc:
            raise AppLoadError(
                f"module {module_name!r} has no attribute {attribute!r} (component {reference!r})"
            ) from exc
    return target
