from __future__ import annotations

import ast
from pathlib import Path

import corolla.core

PUBLIC = {
    "DEFAULT_TTL",
    "MAGIC",
    "WIRE_DTYPES",
    "BufferLike",
    "to_wire_layout",
    "validate_message_type",
    "AggregationError",
    "AppLoadError",
    "ArrayRecord",
    "CodecError",
    "ConfigError",
    "ConfigRecord",
    "Context",
    "CorollaError",
    "Error",
    "ErrorCode",
    "Event",
    "EventSink",
    "ExecutionError",
    "AuthenticationError",
    "PermissionDeniedError",
    "Message",
    "MessageError",
    "MessageType",
    "Metadata",
    "MetricRecord",
    "MissingExtraError",
    "NotEnoughNodesError",
    "Record",
    "RecordDict",
    "RecordError",
    "UserConfigValue",
    "decode_array",
    "describe_event",
    "discard_event",
    "event_json",
    "gist",
    "encode_array",
    "new_message_id",
}


def test_public_names_are_exactly_the_intended_ones() -> None:
    assert set(corolla.core.__all__) == PUBLIC
    assert len(corolla.core.__all__) == len(PUBLIC)
    assert all(hasattr(corolla.core, name) for name in PUBLIC)


def test_core_imports_nothing_else_of_corolla() -> None:
    package = Path(corolla.core.__file__).parent

    for source in package.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.level <= 1, f"{source.name} imports from above core"
                assert not (node.module or "").startswith("corolla"), source.name
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("corolla") for a in node.names), source.name
