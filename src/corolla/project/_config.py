"""An app on disk: a directory whose ``pyproject.toml`` has a ``[tool.corolla.app]`` table
(a Corolla app) or a ``[tool.flwr.app]`` table (a Flower app, see ``_flower_format``), or
a Flower App Bundle (``app.fab``) unpacked into one.

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

    [tool.corolla.app.tracking]     # where runs are tracked (see corolla.tracking)
    backend = "mlflow"              # or "tensorboard"

    [tool.corolla.federations.hospitals]   # where `corolla run --federation hospitals` goes
    address = "link.example.org:9093"      # the link's Control API
    root-certificates = "certs/ca.pem"     # or: insecure = true (loopback only)

A file with both tables is a Corolla app: ``[tool.corolla.app]`` is read and
``[tool.flwr.app]`` left to Flower (a project can serve both frameworks that way).

Either kind of app may mix the frameworks' components. A Corolla app's serverapp or
clientapp that turns out to be a Flower ``ServerApp`` or ``ClientApp`` is loaded through
``corolla.flower``'s adapter (and only then is ``corolla.flower`` imported); a Flower app's
components always go through the adapters, which pass Corolla's apps through unchanged.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Literal

from ..core import ConfigError, UserConfigValue
from ._fab import unpack_fab
from ._flower_format import CLIENT_ADAPTER, FLOWER_PACKAGE, SERVER_ADAPTER, read_flower_app
from ._loader import ComponentRef
from ._toml import flatten, read_toml

__all__ = ["AppConfig", "AppKind"]

_log = logging.getLogger(__name__)

#: Which framework an app is written for.
AppKind = Literal["corolla", "flower"]


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
    #: ``"flower"`` for a ``[tool.flwr.app]`` project, whose components load through
    #: ``corolla.flower``'s adapters.
    kind: AppKind = "corolla"
    #: ``[tool.flwr.app] publisher`` of a Flower app.
    publisher: str | None = None
    #: A Flower app's local-simulation federations, each one's simulation settings by
    #: name (``corolla run --federation NAME`` simulates with them).
    simulations: dict[str, dict[str, UserConfigValue]] = dataclasses.field(default_factory=dict)
    #: ``[tool.corolla.app.tracking]``: the experiment tracker runs log to, checked by
    #: ``corolla.tracking.TrackingSettings.resolve`` when a run starts.
    tracking: dict[str, UserConfigValue] = dataclasses.field(default_factory=dict)

    @property
    def server_ref(self) -> ComponentRef:
        return self._ref(self.serverapp, SERVER_ADAPTER)

    @property
    def client_ref(self) -> ComponentRef:
        return self._ref(self.clientapp, CLIENT_ADAPTER)

    def _ref(self, component: str, adapter: str) -> ComponentRef:
        # A Flower app's components all go through the adapter; a Corolla app's only if
        # Flower made them, so that a Corolla app never needs Flower installed.
        adapter_for = None if self.kind == "flower" else FLOWER_PACKAGE
        return ComponentRef(component, str(self.root), adapter, adapter_for)

    @classmethod
    def load(
        cls,
        app: str | os.PathLike[str],
        *,
        fab_dir: str | os.PathLike[str] | None = None,
        flower_config: str | os.PathLike[str] | None = None,
    ) -> AppConfig:
        """Read ``app/pyproject.toml``; ``app`` may also be a FAB (``*.fab``), unpacked
        into ``fab_dir`` (default: a new temporary directory) and read from there.

        ``flower_config`` is Flower's configuration file (``$FLWR_HOME/config.toml``):
        a Flower app without ``[tool.flwr.federations]`` takes its federations and
        simulation defaults from the file's ``[superlink]`` table, as flwr 1.41 on do.

        Raises
        ------
        ConfigError
            If the directory or file is missing, the TOML is invalid, the file has neither
            a ``[tool.corolla.app]`` nor a ``[tool.flwr.app]`` table, a component is not
            ``"module:attribute"``, or a config value has an unsupported type.
        AppLoadError
            If a FAB is corrupt, too large, or its files do not match its manifest.
        """
        given = Path(app)
        if given.is_file():
            if given.suffix != ".fab":
                raise ConfigError(f"{str(app)!r} is a file: give an app directory or a .fab file")
            directory = fab_dir if fab_dir is not None else tempfile.mkdtemp(prefix="corolla-fab-")
            given = unpack_fab(given, directory)
        root = given.resolve()
        path = root / "pyproject.toml"
        if not root.is_dir():
            raise ConfigError(f"app directory {str(app)!r} does not exist")
        if not path.is_file():
            raise ConfigError(f"{path} not found: an app directory needs a pyproject.toml")
        document = read_toml(path)
        tool = document.get("tool", {})
        name = str(document.get("project", {}).get("name") or root.name)
        corolla_app = tool.get("corolla", {}).get("app")
        flower_app = tool.get("flwr", {}).get("app")
        if isinstance(corolla_app, dict):
            if flower_app is not None:
                _log.info(
                    "%s has [tool.corolla.app] and [tool.flwr.app]: Corolla reads the first", path
                )
            return cls._corolla(root, name, path, corolla_app, tool.get("corolla", {}))
        if isinstance(flower_app, dict):
            return cls._flower(root, name, path, flower_app, tool.get("flwr", {}), flower_config)
        raise ConfigError(
            f"{path} has no [tool.corolla.app] table (a Corolla app) "
            "nor [tool.flwr.app] table (a Flower app)"
        )

    @classmethod
    def _corolla(
        cls, root: Path, name: str, path: Path, table: dict[str, Any], tool: dict[str, Any]
    ) -> AppConfig:
        components = {}
        for key in ("serverapp", "clientapp"):
            value = table.get(key)
            if not isinstance(value, str) or ":" not in value:
                raise ConfigError(f'[tool.corolla.app] in {path} needs {key} = "module:attribute"')
            components[key] = value
        federations_table = tool.get("federations", {})
        if not isinstance(federations_table, dict) or not all(
            isinstance(v, dict) for v in federations_table.values()
        ):
            raise ConfigError(f"[tool.corolla.federations] in {path} must hold tables")
        return cls(
            root=root,
            name=name,
            serverapp=components["serverapp"],
            clientapp=components["clientapp"],
            config=flatten(table.get("config", {})),
            simulation=flatten(table.get("simulation", {}), "simulation entry"),
            tracking=flatten(table.get("tracking", {}), "tracking entry"),
            federations={
                k: flatten(v, f"federation {k!r} entry") for k, v in federations_table.items()
            },
        )

    @classmethod
    def _flower(
        cls,
        root: Path,
        name: str,
        path: Path,
        table: dict[str, Any],
        tool: dict[str, Any],
        flower_config: str | os.PathLike[str] | None,
    ) -> AppConfig:
        federations = tool.get("federations")
        if federations is None and flower_config is not None and Path(flower_config).is_file():
            federations = read_toml(Path(flower_config)).get("superlink")
            path_of_federations = Path(flower_config)
        else:
            path_of_federations = path
        if federations is not None and not isinstance(federations, dict):
            raise ConfigError(f"the federations in {path_of_federations} must be a table")
        flower = read_flower_app(table, path, federations, federations_path=path_of_federations)
        return cls(
            root=root,
            name=name,
            serverapp=flower.serverapp,
            clientapp=flower.clientapp,
            config=flower.config,
            simulation=flower.simulation,
            federations=flower.federations,
            kind="flower",
            publisher=flower.publisher,
            simulations=flower.simulations,
        )
