"""Core data model: records, messages, context, errors, the array codec and threaded
element-wise passes. No I/O."""

from ._codec import MAGIC, WIRE_DTYPES, BufferLike, decode_array, encode_array, to_wire_layout
from ._context import Context, UserConfigValue
from ._describe import describe_event, event_json, gist
from ._errors import (
    AggregationError,
    AppLoadError,
    AuthenticationError,
    CodecError,
    ConfigError,
    CorollaError,
    ErrorCode,
    ExecutionError,
    MessageError,
    MissingExtraError,
    NotEnoughNodesError,
    PermissionDeniedError,
    RecordError,
)
from ._events import Event, EventSink, discard_event
from ._message import (
    DEFAULT_TTL,
    Error,
    Message,
    MessageType,
    Metadata,
    new_message_id,
    validate_message_type,
)
from ._records import ArrayRecord, ConfigRecord, MetricRecord, Record, RecordDict

__all__ = [
    "DEFAULT_TTL",
    "MAGIC",
    "WIRE_DTYPES",
    "AggregationError",
    "AppLoadError",
    "AuthenticationError",
    "ArrayRecord",
    "BufferLike",
    "CodecError",
    "ConfigError",
    "ConfigRecord",
    "Context",
    "CorollaError",
    "Error",
    "Event",
    "EventSink",
    "ErrorCode",
    "ExecutionError",
    "Message",
    "MessageError",
    "MessageType",
    "Metadata",
    "MetricRecord",
    "MissingExtraError",
    "NotEnoughNodesError",
    "PermissionDeniedError",
    "Record",
    "RecordDict",
    "RecordError",
    "UserConfigValue",
    "decode_array",
    "describe_event",
    "discard_event",
    "encode_array",
    "event_json",
    "gist",
    "new_message_id",
    "to_wire_layout",
    "validate_message_type",
]
