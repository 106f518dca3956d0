"""User config (run config, node config, node attributes) <-> ``corolla.v1.UserConfig``."""

from __future__ import annotations

from collections.abc import Mapping

from corolla.core import RecordError, UserConfigValue

from ._proto import records_pb2
from ._values import int64, scalar_kind, valid_text

__all__ = ["user_config_from_proto", "user_config_to_proto"]


def user_config_to_proto(config: Mapping[str, UserConfigValue]) -> records_pb2.UserConfig:
    """Convert run config, node config or node attributes to protobuf.

    Raises
    ------
    RecordError
        If a key is not a non-empty string, or a value is not a bool, an int that fits
        in 64 bits, a float or a str.
    """
    proto = records_pb2.UserConfig()
    with valid_text(RecordError, "config"):
        _fill_user_config(proto, config)
    return proto


def _fill_user_config(proto: records_pb2.UserConfig, config: Mapping[str, UserConfigValue]) -> None:
    for key, value in config.items():
        if not isinstance(key, str) or not key:
            raise RecordError(f"config keys must be non-empty strings, got {key!r}")
        kind = scalar_kind(value)
        if kind == "bytes":
            raise RecordError(f"config value {key!r} must be bool, int, float or str, not bytes")
        if isinstance(value, int) and kind == "int":
            int64(value, f"config value {key!r}")
        setattr(proto.entries.add(key=key).value, f"{kind}_value", value)


def user_config_from_proto(proto: records_pb2.UserConfig) -> dict[str, UserConfigValue]:
    """Rebuild run config, node config or node attributes from protobuf.

    Raises
    ------
    RecordError
        If a key is empty or repeated, or a value is missing.
    """
    config: dict[str, UserConfigValue] = {}
    for entry in proto.entries:
        if not entry.key or entry.key in config:
            raise RecordError(f"config key {entry.key!r} is empty or repeated")
        kind = entry.value.WhichOneof("value")
        if kind is None:
            raise RecordError(f"config value {entry.key!r} is missing")
        config[entry.key] = getattr(entry.value, kind)
    return config
