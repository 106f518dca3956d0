"""Messages: a Flower ``Message`` <-> a Corolla :class:`~corolla.core.Message`.

The metadata fields match one to one (run id, message id, source and destination node,
reply-to id, group id, message type, TTL, creation time). Flower's experimental task ids
(``src_task_id``, ``dst_task_id``) have no Corolla counterpart and are dropped; a converted
Corolla message has none.

Error codes are mapped by meaning (:data:`FROM_FLOWER_CODES`, :data:`TO_FLOWER_CODES`);
a code without a counterpart becomes the other side's ``UNKNOWN`` (0), and the reason is
kept either way (Flower's ``None`` reason becomes ``""``).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from flwr import app as flwr_app
from flwr.app.message import make_message

from corolla.core import Error, ErrorCode, Message, MessageError, Metadata, RecordError

from ._records import record_dict_from_flower, record_dict_to_flower

__all__ = [
    "FROM_FLOWER_CODES",
    "TO_FLOWER_CODES",
    "error_from_flower",
    "error_to_flower",
    "message_from_flower",
    "message_to_flower",
]

# Flower's codes (``flwr.common.constant.ErrorCode``), written out so that reading the
# table needs no Flower internals.
_FLOWER_UNKNOWN = 0
_FLOWER_LOAD_CLIENT_APP_EXCEPTION = 1
_FLOWER_CLIENT_APP_RAISED_EXCEPTION = 2
_FLOWER_MESSAGE_UNAVAILABLE = 3
_FLOWER_REPLY_MESSAGE_UNAVAILABLE = 4
_FLOWER_NODE_UNAVAILABLE = 5
_FLOWER_MOD_FAILED_PRECONDITION = 6
_FLOWER_INVALID_FAB = 7
_FLOWER_CLIENT_APP_CRASHED = 8

#: Flower error code -> Corolla :class:`~corolla.core.ErrorCode`. A mod refusing a message
#: is a misused message; a FAB that fails verification is an app that cannot be loaded.
FROM_FLOWER_CODES: Mapping[int, ErrorCode] = MappingProxyType(
    {
        _FLOWER_UNKNOWN: ErrorCode.UNKNOWN,
        _FLOWER_LOAD_CLIENT_APP_EXCEPTION: ErrorCode.APP_LOAD,
        _FLOWER_CLIENT_APP_RAISED_EXCEPTION: ErrorCode.CLIENT_APP_RAISED,
        _FLOWER_MESSAGE_UNAVAILABLE: ErrorCode.MESSAGE_UNAVAILABLE,
        _FLOWER_REPLY_MESSAGE_UNAVAILABLE: ErrorCode.REPLY_UNAVAILABLE,
        _FLOWER_NODE_UNAVAILABLE: ErrorCode.NODE_UNAVAILABLE,
        _FLOWER_MOD_FAILED_PRECONDITION: ErrorCode.MESSAGE,
        _FLOWER_INVALID_FAB: ErrorCode.APP_LOAD,
        _FLOWER_CLIENT_APP_CRASHED: ErrorCode.WORKER_CRASHED,
    }
)

#: Corolla :class:`~corolla.core.ErrorCode` -> Flower error code; the inverse of
#: :data:`FROM_FLOWER_CODES` (``APP_LOAD`` goes back as a ClientApp that failed to load).
#: A ClientApp call that ran past its deadline is, to Flower, a reply that never came; a
#: Corolla ClientApp without a handler for the message's type is one that raised, as a
#: Flower ClientApp raises then.
TO_FLOWER_CODES: Mapping[int, int] = MappingProxyType(
    {
        ErrorCode.UNKNOWN: _FLOWER_UNKNOWN,
        ErrorCode.APP_LOAD: _FLOWER_LOAD_CLIENT_APP_EXCEPTION,
        ErrorCode.CLIENT_APP_RAISED: _FLOWER_CLIENT_APP_RAISED_EXCEPTION,
        ErrorCode.NO_HANDLER: _FLOWER_CLIENT_APP_RAISED_EXCEPTION,
        ErrorCode.MESSAGE_UNAVAILABLE: _FLOWER_MESSAGE_UNAVAILABLE,
        ErrorCode.REPLY_UNAVAILABLE: _FLOWER_REPLY_MESSAGE_UNAVAILABLE,
        ErrorCode.TIMEOUT: _FLOWER_REPLY_MESSAGE_UNAVAILABLE,
        ErrorCode.NODE_UNAVAILABLE: _FLOWER_NODE_UNAVAILABLE,
        ErrorCode.MESSAGE: _FLOWER_MOD_FAILED_PRECONDITION,
        ErrorCode.WORKER_CRASHED: _FLOWER_CLIENT_APP_CRASHED,
    }
)


def error_from_flower(error: flwr_app.Error) -> Error:
    """A Corolla :class:`~corolla.core.Error` with the Flower error's meaning and reason.

    Raises
    ------
    MessageError
        If the Flower error's code is not an int.
    """
    code = error.code
    if not isinstance(code, int) or isinstance(code, bool):
        raise MessageError(f"Flower error code must be an int, got {code!r}")
    return Error(int(FROM_FLOWER_CODES.get(code, ErrorCode.UNKNOWN)), error.reason or "")


def error_to_flower(error: Error) -> flwr_app.Error:
    """A Flower ``Error`` with the Corolla error's meaning and reason."""
    return flwr_app.Error(TO_FLOWER_CODES.get(error.code, _FLOWER_UNKNOWN), error.reason)


def message_from_flower(message: flwr_app.Message) -> Message:
    """A Corolla :class:`~corolla.core.Message` with a Flower message's metadata and its
    content (arrays viewed, not copied) or error.

    Raises
    ------
    MessageError
        If the message type is one of Flower's legacy ones (``get_parameters``,
        ``get_properties``, ``reconnect``), which Corolla does not know.
    RecordError
        If the content holds something Corolla cannot (see :mod:`corolla.flower`).
    """
    flower = message.metadata
    metadata = Metadata(
        run_id=int(flower.run_id),
        message_id=flower.message_id,
        src_node_id=int(flower.src_node_id),
        dst_node_id=int(flower.dst_node_id),
        reply_to_message_id=flower.reply_to_message_id,
        group_id=flower.group_id,
        message_type=flower.message_type,
        ttl=float(flower.ttl),
        created_at=float(flower.created_at),
    )
    content = None
    error = None
    if message.has_error():
        error = error_from_flower(message.error)
    else:
        try:
            content = record_dict_from_flower(message.content)
        except RecordError as exc:
            raise RecordError(f"Flower message content: {exc}") from exc
    try:
        return Message(content, error=error, metadata=metadata)
    except MessageError as exc:
        raise MessageError(f"Flower message cannot be represented in Corolla: {exc}") from exc


def message_to_flower(message: Message) -> flwr_app.Message:
    """A Flower ``Message`` with a Corolla message's metadata and its content (each array
    copied once, into Flower's bytes) or error."""
    ours = message.metadata
    metadata = flwr_app.Metadata(
        run_id=ours.run_id,
        message_id=ours.message_id,
        src_node_id=ours.src_node_id,
        dst_node_id=ours.dst_node_id,
        reply_to_message_id=ours.reply_to_message_id,
        group_id=ours.group_id,
        created_at=ours.created_at,
        ttl=ours.ttl,
        message_type=ours.message_type,
    )
    # Flower's constructor derives metadata (a new message, or a reply to one it holds);
    # ``make_message`` takes it complete, as Flower's own deserialization does.
    if message.has_error():
        return make_message(metadata, error=error_to_flower(message.error))
    return make_message(metadata, content=record_dict_to_flower(message.content))
