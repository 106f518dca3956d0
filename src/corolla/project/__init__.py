"""Apps on disk: component references and the ``[tool.corolla.app]`` configuration."""

from ._config import AppConfig, merge_run_config, parse_overrides
from ._loader import ComponentRef, load_component

__all__ = ["AppConfig", "ComponentRef", "load_component", "merge_run_config", "parse_overrides"]
