"""Messages: metadata plus either content (a :class:`RecordDict`) or an :class:`Error`.

A ServerApp creates messages addressed to nodes (``Message(content, dst_node_id=...,
message_type="train")``); a ClientApp answers with ``Message(content, reply_to=message)``
or lets an exception become an error reply. The runtime fills in run id, message id and
source node. Messages are immutable; :meth:`Message.with_metadata` derives a new one.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from typing import Any

from ._errors import ErrorCode, MessageError
from ._records import RecordDict

__all__ = [
    "DEFAULT_TTL",
    "Error",
    "Message",
    "MessageType",
    "Metadata",
    "validate_message_type",
]

#: Seconds a message stays deliverable unless its sender says otherwise.
DEFAULT_TTL = 12 * 3600.0

#: The node id that stands for the ServerApp side.
SERVER_NODE_ID = 0


class MessageType:
    """The built-in message types; ``"<type>.<custom>"`` names a custom action."""

    TRAIN = "train"
    EVALUATE = "evaluate"
    QUERY = "query"
    SYSTEM = "system"

    BASE = frozenset({TRAIN, EVALUATE, QUERY, SYSTEM})


def validate_message_type(message_type: str) -> str:
    """Return ``message_type`` if it is ``train``/``evaluate``/``query`` or ``<one>.<name>``.

    Raises
    ------
    MessageError
        For any other string.
    """
    if not isinstance(message_type, str):
        raise MessageError(f"message type must be a str, got {type(message_type).__name__}")
    base, _, custom = message_type.partition(".")
    if base not in MessageType.BASE or ("." in message_type and not custom.isidentifier()):
        raise MessageError(
            f"invalid message type {message_type!r}: use 'train', 'evaluate', 'query' "
            "or '<one of those>.<identifier>'"
        )
    return message_type


@dataclasses.dataclass(frozen=True)
class Error:
    """Why a message could not be answered: a stable :class:`ErrorCode` and a reason."""

    code: int
    reason: str

    def __str__(self) -> str:
        try:
            name = ErrorCode(self.code).name
        except ValueError:
            name = str(self.code)
        return f"[{name}] {self.reason}"


@dataclasses.dataclass(frozen=True)
class Metadata:
    """Addressing and bookkeeping of a message.

    ``traceparent`` is the W3C trace context of the span that sent it, with tracing on
    (see ``corolla.telemetry``); empty otherwise. A reply does not inherit it.
    """

    run_id: int
    message_id: str
    src_node_id: int
    dst_node_id: int
    reply_to_message_id: str
    group_id: str
    message_type: str
    ttl: float = DEFAULT_TTL
    created_at: float = 0.0
    traceparent: str = ""


class Message:
    """A unit of communication between a ServerApp and a ClientApp.

    Parameters
    ----------
    content
        What the message carries. Exactly one of ``content`` and ``error`` is given.
    error
        Why the message could not be answered (replies only).
    dst_node_id, message_type, group_id, ttl
        Addressing of a new message sent by a ServerApp.
    reply_to
        The message this one answers; addressing is derived from it (``ttl`` may still be
        given).
    metadata
        Complete metadata, used as is (the runtime rebuilding a message).

    Raises
    ------
    MessageError
        If both or neither of ``content`` and ``error`` are given, if addressing is given
        both explicitly and through ``reply_to`` or ``metadata``, if a new message lacks a
        destination or type, if the message type is invalid or if ``ttl`` is not positive.
    """

    __slots__ = ("_content", "_error", "_metadata")

    def __init__(
        self,
        content: RecordDict | None = None,
        *,
        error: Error | None = None,
        dst_node_id: int | None = None,
        message_type: str | None = None,
        group_id: str = "",
        ttl: float | None = None,
        reply_to: Message | None = None,
        metadata: Metadata | None = None,
    ) -> None:
        if (content is None) == (error is None):
            raise MessageError("a message holds exactly one of content and error")
        if content is not None and not isinstance(content, RecordDict):
            raise MessageError(
                f"message content must be a RecordDict, got {type(content).__name__}"
            )
        if error is not None and not isinstance(error, Error):
            raise MessageError(f"message error must be an Error, got {type(error).__name__}")
        if ttl is not None and not float(ttl) > 0:
            raise MessageError(f"message ttl must be a positive number of seconds, got {ttl!r}")
        addressed = dst_node_id is not None or message_type is not None or group_id != ""
        if (metadata is not None) + (reply_to is not None) + addressed > 1 or (
            metadata is not None and ttl is not None
        ):
            raise MessageError(
                "give a message's addressing one way only: dst_node_id/message_type/"
                "group_id, reply_to, or metadata"
            )
        self._content = content
        self._error = error
        self._metadata: Metadata
        if metadata is not None:
            if not isinstance(metadata, Metadata):
                raise MessageError(f"metadata must be a Metadata, got {type(metadata).__name__}")
            validate_message_type(metadata.message_type)
            self._metadata = metadata
        elif reply_to is not None:
            request = reply_to.metadata
            self._metadata = Metadata(
                run_id=request.run_id,
                message_id="",
                src_node_id=request.dst_node_id,
                dst_node_id=request.src_node_id,
                reply_to_message_id=request.message_id,
                group_id=request.group_id,
                message_type=request.message_type,
                ttl=request.ttl if ttl is None else float(ttl),
                created_at=time.time(),
            )
        else:
            if dst_node_id is None or message_type is None:
                raise MessageError("a new message needs dst_node_id and message_type")
            self._metadata = Metadata(
                run_id=0,
                message_id="",
                src_node_id=SERVER_NODE_ID,
                dst_node_id=int(dst_node_id),
                reply_to_message_id="",
                group_id=str(group_id),
                message_type=validate_message_type(message_type),
                ttl=DEFAULT_TTL if ttl is None else float(ttl),
                created_at=time.time(),
            )

    @property
    def metadata(self) -> Metadata:
        """Addressing and bookkeeping; derive changed copies with :meth:`with_metadata`."""
        return self._metadata

    @property
    def content(self) -> RecordDict:
        """The records carried.

        Raises
        ------
        MessageError
            If this is an error message.
        """
        if self._content is None:
            raise MessageError(f"message has no content, it carries an error: {self._error}")
        return self._content

    @property
    def error(self) -> Error:
        """The error carried.

        Raises
        ------
        MessageError
            If this message has content.
        """
        if self._error is None:
            raise MessageError("message has content, not an error")
        return self._error

    def has_content(self) -> bool:
        """True if the message carries content (then it carries no error)."""
        return self._content is not None

    def has_error(self) -> bool:
        """True if the message carries an error (then it carries no content)."""
        return self._error is not None

    def with_metadata(self, **changes: Any) -> Message:
        """A copy sharing the content, with some metadata fields replaced.

        Raises
        ------
        TypeError
            If a name is not a :class:`Metadata` field.
        MessageError
            If the new message type is invalid.
        """
        return Message(
            self._content,
            error=self._error,
            metadata=dataclasses.replace(self.metadata, **changes),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return (
            self._metadata == other._metadata
            and self._error == other._error
            and self._content == other._content
        )

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_message, (self._content, self._error, self._metadata))

    def __repr__(self) -> str:
        m = self.metadata
        body = f"error={self._error}" if self._error is not None else f"content={self._content!r}"
        return (
            f"Message(type={m.message_type!r}, dst={m.dst_node_id}, src={m.src_node_id}, "
            f"group={m.group_id!r}, {body})"
        )


def _rebuild_message(
    content: RecordDict | None, error: Error | None, metadata: Metadata
) -> Message:
    return Message(content, error=error, metadata=metadata)


def new_message_id() -> str:
    """A fresh, unique message id."""
    return uuid.uuid4().hex
