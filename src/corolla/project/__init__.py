"""Apps on disk: component references, the ``[tool.corolla.app]`` configuration, and run
config overrides checked against the app's defaults."""

from ._config import AppConfig
from ._loader import ComponentRef, load_component
from ._overrides import merge_run_config, parse_overrides

__all__ = [
    "AppConfig",
    "ComponentRef",
    "load_component",
    "merge_run_config",
    "parse_overrides",
]
