"""Reading ``pyproject.toml`` files and flattening their tables the way Flower does."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..core import ConfigError, UserConfigValue

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["flatten", "read_toml"]


def read_toml(path: Path) -> dict[str, Any]:
    """The TOML document at ``path``.

    Raises
    ------
    ConfigError
        If the file is not UTF-8 or not valid TOML.
    """
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc


def flatten(
    table: Mapping[str, Any], what: str = "run config entry", prefix: str = ""
) -> dict[str, UserConfigValue]:
    """``table`` with nested tables flattened to dotted keys: ``{"a": {"b": 1}}`` gives
    ``{"a.b": 1}``.

    Raises
    ------
    ConfigError
        If a value is not a bool, int, float, string or table (``what`` names it).
    """
    out: dict[str, UserConfigValue] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, what, f"{name}."))
        elif isinstance(value, bool | int | float | str):
            out[name] = value
        else:
            raise ConfigError(
                f"{what} {name!r} must be a bool, int, float or string, got {type(value).__name__}"
            )
    return out
