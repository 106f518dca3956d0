"""Run config overrides: ``KEY=VALUE`` items, checked against the app's defaults.

The rule, which the CLI documents (``docs/quickstart.md``):

- An override names a key the app defines (or ``seed``), so typos do not pass silently.
- Its value takes the type of the key's default: a bool default wants ``true`` or
  ``false``; an int default an integer (``2.5`` and ``five`` are refused); a float
  default a number (an integer is taken as a float); a string default any text (``"x y"``
  in TOML quotes keeps its spaces, unquoted text is taken as written).
- A key whose name holds the word ``fraction`` or ``probability`` (e.g.
  ``fraction-train``, ``dropout.probability``) wants a number from 0 to 1. A default
  alone does not make a fraction: 0.5 may as well be a learning rate.

``--run-config a=1 b=2`` and Flower's quoted form ``--run-config "a=1 b=2"`` both give
the two pairs: whitespace separates pairs, except inside TOML quotes. A dotted key
(``optimizer.lr=0.1``) names the flattened key of a nested table, as in Flower. As in
Flower, an item that is a path ending in ``.toml`` is a file of overrides, its nested
tables flattened the same way.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from ..core import ConfigError, UserConfigValue
from ._toml import flatten, read_toml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["RESERVED_KEYS", "is_fraction_key", "merge_run_config", "parse_overrides"]

#: Run-config keys every app accepts, whether or not its pyproject.toml names them,
#: with the type each wants.
RESERVED_KEYS: dict[str, type] = {"seed": int}

#: Words of a key's name that make its value a fraction from 0 to 1.
_FRACTION_WORDS = frozenset({"fraction", "probability"})

# KEY=VALUE, the value a TOML string in double or single quotes, or up to the next space.
_PAIR = re.compile(
    r"""\s*(?P<key>[^=\s]+)\s*=\s*(?P<value>"(?:[^"\\]|\\.)*"|'[^']*'|\S*)(?=\s|$)"""
)


def _pairs(item: str) -> Iterator[tuple[str, str]]:
    position = 0
    while position < len(item) and not item[position:].isspace():
        match = _PAIR.match(item, position)
        if match is None:
            rest = item[position:].strip()
            raise ConfigError(
                f"override {rest!r} must look like KEY=VALUE "
                '(several: "a=1 b=2"; a value with spaces in TOML quotes: name="x y")'
            )
        yield match["key"], match["value"]
        position = match.end()


def _file(path: Path) -> dict[str, UserConfigValue]:
    if not path.is_file():
        raise ConfigError(f"run config file {str(path)!r} does not exist")
    return flatten(read_toml(path), f"run config entry of {path}")


def _toml(text: str) -> UserConfigValue | None:
    """``text`` read as a TOML scalar, or None if it is not one."""
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return None
    return value if isinstance(value, bool | int | float | str) else None


def _typed(text: str, default: UserConfigValue | type | None) -> UserConfigValue:
    value = _toml(text)
    if default is str or isinstance(default, str):
        # Text as written, unless quoted: "007" stays "007", not the integer 7.
        return value if isinstance(value, str) else text
    # Text that is no TOML scalar stays text; the merge refuses it where a number is due.
    return text if value is None else value


def parse_overrides(
    items: Iterable[str], defaults: Mapping[str, UserConfigValue] | None = None
) -> dict[str, UserConfigValue]:
    """Parse ``KEY=VALUE`` items (several to an item, separated by spaces), or TOML files.

    Values are read as TOML (``0.1``, ``true``, ``"x y"``), falling back to plain text;
    with ``defaults``, a key whose default is a string takes its text as written. An item
    ending in ``.toml`` without ``=`` is a TOML file whose values are taken as typed.

    Raises
    ------
    ConfigError
        If an item is not a sequence of ``KEY=VALUE`` pairs, or a TOML file is missing,
        invalid or holds a value that is not a bool, int, float or string.
    """
    defaults = defaults or {}
    out: dict[str, UserConfigValue] = {}
    for item in items:
        if item.endswith(".toml") and "=" not in item:
            out.update(_file(Path(item)))
            continue
        for key, text in _pairs(item):
            default = defaults.get(key, RESERVED_KEYS.get(key))
            out[key] = _typed(text, default)
    return out


def is_fraction_key(key: str) -> bool:
    """True if ``key``'s last part names a fraction (``fraction-train``, ``x.probability``)."""
    words = re.split(r"[-_]", key.rpartition(".")[2].lower())
    return not _FRACTION_WORDS.isdisjoint(words)


def _type_name(value: UserConfigValue | type) -> str:
    kind = value if isinstance(value, type) else type(value)
    return {bool: "true or false", int: "an integer", float: "a number", str: "text"}[kind]


def _checked(key: str, value: UserConfigValue, default: UserConfigValue | type) -> UserConfigValue:
    kind = default if isinstance(default, type) else type(default)
    shown = "" if isinstance(default, type) else f" (its default is {_shown(default)})"
    wrong = ConfigError(
        f"run config {key} wants {_type_name(default)}{shown}, got {value!r}"
        + (f": write {key}={int(value)}" if kind is int and _is_whole(value) else "")
    )
    if kind is bool:
        if not isinstance(value, bool):
            raise wrong
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise wrong
        value = float(value)
    elif not isinstance(value, str):
        raise wrong
    if is_fraction_key(key) and not _within_0_1(value):
        raise ConfigError(f"run config {key} is a fraction from 0 to 1, got {value!r}")
    return value


def _within_0_1(value: UserConfigValue) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return True  # a fraction key given a text or bool default is not a number to bound
    return math.isfinite(value) and 0.0 <= value <= 1.0


def _shown(value: UserConfigValue) -> str:
    # As the user writes it in TOML: true, not True.
    return str(value).lower() if isinstance(value, bool) else repr(value)


def _is_whole(value: UserConfigValue) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value.is_integer()


def merge_run_config(
    defaults: Mapping[str, UserConfigValue], overrides: Mapping[str, UserConfigValue]
) -> dict[str, UserConfigValue]:
    """Defaults updated with overrides, each checked against its default's type.

    Raises
    ------
    ConfigError
        If an override names a key the app does not define (typos would be silent), has
        a value of another type than its default, or is a fraction outside 0-1.
    """
    unknown = sorted(set(overrides) - set(defaults) - set(RESERVED_KEYS))
    if unknown:
        raise ConfigError(
            f"unknown run config key(s) {unknown}; the app defines {sorted(defaults)}"
        )
    merged = dict(defaults)
    for key, value in overrides.items():
        default = defaults[key] if key in defaults else RESERVED_KEYS[key]
        merged[key] = _checked(key, value, default)
    return merged
