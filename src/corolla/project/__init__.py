"""Apps on disk: component references and the ``[tool.corolla.app]`` configuration."""

from ._loader import ComponentRef, load_component

__all__ = ["ComponentRef", "load_component"]
