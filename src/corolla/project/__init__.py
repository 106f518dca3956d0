"""Apps on disk: component references, the ``[tool.corolla.app]`` or Flower's
``[tool.flwr.app]`` configuration, Flower App Bundles, safe archive extraction, and run
config overrides checked against the app's defaults."""

from ._archive import ArchiveLimits, extract_archive
from ._config import AppConfig, AppKind
from ._fab import unpack_fab
from ._loader import ComponentRef, load_component
from ._overrides import merge_run_config, parse_overrides

__all__ = [
    "AppConfig",
    "AppKind",
    "ArchiveLimits",
    "ComponentRef",
    "extract_archive",
    "load_component",
    "merge_run_config",
    "parse_overrides",
    "unpack_fab",
]
