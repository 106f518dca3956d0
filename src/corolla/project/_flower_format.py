"""Flower's project format: a ``pyproject.toml`` that ``flwr new`` wrote.

::

    [tool.flwr.app]
    publisher = "alice"

    [tool.flwr.app.components]
    serverapp = "myapp.server_app:app"
    clientapp = "myapp.client_app:app"

    [tool.flwr.app.config]                 # run config defaults, nested tables flattened
    num-server-rounds = 3                  # with dots, as Flower does
    lr = 0.01

    [tool.flwr.federations]                # flwr up to 1.40; 1.41 on keep these as
    default = "local-simulation"           # [superlink] connections in the Flower
                                           # configuration file ($FLWR_HOME/config.toml)
    [tool.flwr.federations.local-simulation]
    options.num-supernodes = 10
    options.backend.client-resources.num-cpus = 2

    [tool.flwr.federations.remote]
    address = "link.example.org:9093"
    insecure = true

The default federation's (or connection's) ``options`` become simulation defaults:
``num-supernodes`` the number of virtual nodes, ``backend.client-resources.num-cpus`` how
many cores one virtual node takes (so ``workers`` = cores // num-cpus run at once). The
other options (GPUs per node, Ray's init arguments, ``verbose``) mean nothing to Corolla's
simulation: each is skipped with a note logged at info level, or, for a share of a GPU
above 0, a warning. Federations with an address become
Corolla federations (``corolla run --federation NAME``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..core import ConfigError, UserConfigValue
from ._toml import flatten

__all__ = ["CLIENT_ADAPTER", "FLOWER_PACKAGE", "SERVER_ADAPTER", "FlowerApp", "read_flower_app"]

_log = logging.getLogger(__name__)

#: Adapters that turn Flower's ``ClientApp`` and ``ServerApp`` into Corolla's (and pass
#: Corolla's through unchanged).
CLIENT_ADAPTER = "corolla.flower:client_app_adapter"
SERVER_ADAPTER = "corolla.flower:server_app_adapter"
#: The package whose objects, named as a Corolla app's components, take those adapters.
FLOWER_PACKAGE = "flwr"

#: The option that asks Flower's Ray backend for a share of a GPU per virtual node.
_GPUS = "backend.client-resources.num-gpus"

#: Addresses Flower's configuration file gives a local simulation, not a SuperLink.
_LOCAL_ADDRESSES = frozenset({":local:", ":local-in-memory:"})


@dataclasses.dataclass(frozen=True)
class FlowerApp:
    """What Flower's tables of a ``pyproject.toml`` say, in Corolla's terms."""

    publisher: str | None
    serverapp: str
    clientapp: str
    config: dict[str, UserConfigValue]
    simulation: dict[str, UserConfigValue]
    federations: dict[str, dict[str, UserConfigValue]]
    #: Each local-simulation federation's simulation settings, by name.
    simulations: dict[str, dict[str, UserConfigValue]] = dataclasses.field(default_factory=dict)


def read_flower_app(
    app: Mapping[str, Any],
    path: Path,
    federations: Mapping[str, Any] | None = None,
    *,
    federations_path: Path | None = None,
    cpu_count: Callable[[], int | None] = os.cpu_count,
) -> FlowerApp:
    """Read ``[tool.flwr.app]`` (``app``) of the file at ``path``, and ``federations``:
    ``[tool.flwr.federations]`` of the same file, or the ``[superlink]`` table of
    Flower's configuration file at ``federations_path``.

    Raises
    ------
    ConfigError
        If the components table is missing or a component is not ``"module:attribute"``,
        a config value has an unsupported type, or a federation is malformed.
    """
    components = app.get("components")
    if not isinstance(components, dict):
        raise ConfigError(
            f"[tool.flwr.app] in {path} has no [tool.flwr.app.components] table "
            '(serverapp = "module:attribute", clientapp = "module:attribute")'
        )
    refs = {}
    for key in ("serverapp", "clientapp"):
        value = components.get(key)
        if not isinstance(value, str) or not _is_reference(value):
            raise ConfigError(
                f'[tool.flwr.app.components] in {path} needs {key} = "module:attribute", '
                f"got {value!r}"
            )
        refs[key] = value
    config = app.get("config", {})
    if not isinstance(config, dict):
        raise ConfigError(f"[tool.flwr.app.config] in {path} must be a table")
    publisher = app.get("publisher")
    remote, simulations, chosen = _federations(
        federations or {}, federations_path or path, cpu_count
    )
    return FlowerApp(
        publisher=publisher if isinstance(publisher, str) else None,
        serverapp=refs["serverapp"],
        clientapp=refs["clientapp"],
        config=flatten(config),
        simulation=simulations.get(chosen, {}) if chosen is not None else {},
        federations=remote,
        simulations=simulations,
    )


def _is_reference(value: str) -> bool:
    module, sep, attribute = value.partition(":")
    return bool(sep and module.strip() and attribute.strip())


def _federations(
    table: Mapping[str, Any], path: Path, cpu_count: Callable[[], int | None]
) -> tuple[
    dict[str, dict[str, UserConfigValue]], dict[str, dict[str, UserConfigValue]], str | None
]:
    """The federations with an address, each local one's simulation settings, and the
    local one whose settings are the simulation's defaults (the default federation, or
    the only local one), if any."""
    default = table.get("default")
    entries = {name: value for name, value in table.items() if name != "default"}
    for name, value in entries.items():
        if not isinstance(value, dict):
            raise ConfigError(f"federation {name!r} in {path} must be a table")
    if default is not None and default not in entries:
        raise ConfigError(
            f"the default federation {default!r} in {path} is not defined; "
            f"there are {sorted(entries) or 'none'}"
        )
    remote = {
        name: flatten(entry, f"federation {name!r} entry")
        for name, entry in entries.items()
        if entry.get("address") not in _LOCAL_ADDRESSES and "address" in entry
    }
    simulations = {}
    for name, entry in entries.items():
        if name in remote:
            continue
        options = entry.get("options", {})
        if not isinstance(options, dict):
            raise ConfigError(f"options of federation {name!r} in {path} must be a table")
        simulations[name] = _simulation(
            flatten(options, f"option of federation {name!r}"), name, cpu_count
        )
    chosen = default if default in simulations else None
    if chosen is None and len(simulations) == 1:
        chosen = next(iter(simulations))
    return remote, simulations, chosen


def _simulation(
    options: Mapping[str, UserConfigValue], federation: str, cpu_count: Callable[[], int | None]
) -> dict[str, UserConfigValue]:
    simulation: dict[str, UserConfigValue] = {}
    for key, value in options.items():
        if key == "num-supernodes":
            simulation["num-nodes"] = _positive_int(key, value, federation)
        elif key == "backend.client-resources.num-cpus":
            per_node = _positive_number(key, value, federation)
            simulation["workers"] = max(1, math.floor((cpu_count() or 1) / per_node))
        elif key == _GPUS and _above_zero(value):
            # Asked for, and not given: said at the default log level, unlike the others.
            _log.warning(
                "option %s = %r of federation %r is skipped: Corolla's simulation does not "
                "share GPUs out among virtual nodes as Flower's Ray backend does; its worker "
                "processes see this machine's GPUs as any process does",
                key,
                value,
                federation,
            )
        else:
            _log.info(
                "option %s = %r of federation %r is skipped: Corolla's simulation runs "
                "virtual nodes in worker processes, one per core, on CPUs",
                key,
                value,
                federation,
            )
    return simulation


def _above_zero(value: UserConfigValue) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and value > 0


def _positive_int(key: str, value: UserConfigValue, federation: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"options.{key} of federation {federation!r} must be a positive integer, got {value!r}"
        )
    return value


def _positive_number(key: str, value: UserConfigValue, federation: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(
            f"options.{key} of federation {federation!r} must be a number above 0, got {value!r}"
        )
    return float(value)
