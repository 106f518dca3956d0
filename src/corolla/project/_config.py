"""An app on disk: a directory whose ``pyproject.toml`` has a ``[tool.corolla.app]`` table.

::

    [tool.corolla.app]
    serverapp = "mypkg.server_app:app"
    clientapp = "mypkg.client_app:app"

    [tool.corolla.app.config]       # run config defaults, overridable per run
    num-server-rounds = 10
    learning-rate = 0.1

    [tool.corolla.app.simulation]   # simulation defaults
    num-nodes = 50
    backend = "process"

    [tool.corolla.federations.hospitals]   # where `corolla run --federation hospitals` goes
    address = "link.example.org:9093"      # the link's Control API
    root-certificates = "certs/ca.pem"     # or: insecure = true (loopback only)
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..core import ConfigError, UserConfigValue
from ._loader import ComponentRef

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["AppConfig"]


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, UserConfigValue]:
    out: dict[str, UserConfigValue] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{name}."))
        elif isinstance(value, bool | int | float | str):
            out[name] = value
        else:
            raise ConfigError(
                f"run config entry {name!r} must be a bool, int, float or string, "
                f"got {type(value).__name__}"
            )
    return out


@dataclasses.dataclass(frozen=True)
class AppConfig:
    """What an app directory's ``pyproject.toml`` says about the app."""

    root: Path
    name: str
    serverapp: str
    clientapp: str
    config: dict[str, UserConfigValue]
    simulation: dict[str, UserConfigValue]
    federations: dict[str, dict[str, UserConfigValue]] = dataclasses.field(default_factory=dict)

    @property
    def server_ref(self) -> ComponentRef:
        return ComponentRef(self.serverapp, str(self.root))

    @property
    def client_ref(self) -> ComponentRef:
        return ComponentRef(self.clientapp, str(self.root))

    @classmethod
    def load(cls, app_dir: str | Path) -> AppConfig:
        """Read ``app_dir/pyproject.toml``.

        Raises
        ------
        ConfigError
            If the directory or file is missing, the TOML is invalid, or the
            ``[tool.corolla.app]`` table lacks ``serverapp`` or ``clientapp``.
        """
        root = Path(app_dir).resolve()
        path = root / "pyproject.toml"
        if not root.is_dir():
            raise ConfigError(f"app directory {str(app_dir)!r} does not exist")
        if not path.is_file():
            raise ConfigError(f"{path} not found: an app directory needs a pyproject.toml")
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
        table = document.get("tool", {}).get("corolla", {}).get("app")
        if not isinstance(table, dict):
            raise ConfigError(f"{path} has no [tool.corolla.app] table")
        components = {}
        for key in ("serverapp", "clientapp"):
            value = table.get(key)
            if not isinstance(value, str) or ":" not in value:
                raise ConfigError(f'[tool.corolla.app] in {path} needs {key} = "module:attribute"')
            components[key] = value
        name = document.get("project", {}).get("name") or root.name
        federations_table = document.get("tool", {}).get("corolla", {}).get("federations", {})
        if not isinstance(federations_table, dict) or not all(
            isinstance(v, dict) for v in federations_table.values()
        ):
            raise ConfigError(f"[tool.corolla.federations] in {path} must hold tables")
        return cls(
            root=root,
            name=str(name),
            serverapp=components["serverapp"],
            clientapp=components["clientapp"],
            config=_flatten(table.get("config", {})),
            simulation=_flatten(table.get("simulation", {})),
            federations={k: _flatten(v) for k, v in federations_table.items()},
        )
