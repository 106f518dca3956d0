"""Errors of the state layer, placed in the one hierarchy rooted in :class:`CorollaError`.

Each error hangs under the core error whose meaning it narrows, so ``except ConfigError``
or ``except MessageError`` keeps catching it, and it carries an existing, stable code::

    CorollaError
    ├── ConfigError (ValueError)
    │   ├── UnknownRunError (LookupError)          NOT_FOUND            no such run
    │   ├── RunStatusError                         CONFLICT             illegal transition,
    │   │                                                               messages for an ended run
    │   ├── SchemaVersionError                     CONFIG               database newer than code
    │   └── InvalidBlobHashError                   CONFIG               not 64 lowercase hex digits
    ├── MessageError (ValueError)
    │   ├── UnknownMessageError (LookupError)      MESSAGE_UNAVAILABLE  no such message id
    │   └── ReplyRejectedError                     INVALID_REPLY        a reply the link refuses
    ├── CodecError (ValueError)
    │   └── BlobIntegrityError                     CODEC                content != expected hash
    ├── UnknownNodeError (LookupError)             NODE_UNAVAILABLE     no such node id
    ├── NodeAuthenticationError (PermissionError)  UNAUTHENTICATED      wrong node token
    ├── BlobNotFoundError (LookupError)            MESSAGE_UNAVAILABLE  no blob with that hash
    └── StorageError (OSError)                     STORAGE              the database or disk failed
        ├── CorruptStateError                      STORAGE              database damaged or empty
        └── StateInUseError                        CONFLICT             another process holds the
                                                                        state directory
"""

from __future__ import annotations

from corolla.core import (
    CodecError,
    ConfigError,
    CorollaError,
    ErrorCode,
    MessageError,
)

__all__ = [
    "BlobIntegrityError",
    "BlobNotFoundError",
    "CorruptStateError",
    "InvalidBlobHashError",
    "NodeAuthenticationError",
    "ReplyRejectedError",
    "RunStatusError",
    "SchemaVersionError",
    "StateInUseError",
    "StorageError",
    "UnknownMessageError",
    "UnknownNodeError",
    "UnknownRunError",
]


class UnknownRunError(ConfigError, LookupError):
    """No run has the given id."""

    code = ErrorCode.NOT_FOUND


class RunStatusError(ConfigError):
    """The run's status does not allow the operation (an illegal transition, or messages
    for a run that has ended)."""

    code = ErrorCode.CONFLICT


class SchemaVersionError(ConfigError):
    """The database was written by a newer Corolla (or is not a Corolla state database)."""


class InvalidBlobHashError(ConfigError):
    """A blob hash is not a sha256 digest spelled as 64 lowercase hexadecimal digits."""


class UnknownMessageError(MessageError, LookupError):
    """No message of the run has the given id."""

    code = ErrorCode.MESSAGE_UNAVAILABLE


class ReplyRejectedError(MessageError):
    """A reply answers no message delivered to its sender, or its message already has a
    different answer (a reply, or the link's error reply after expiry or node loss)."""

    code = ErrorCode.INVALID_REPLY


class BlobIntegrityError(CodecError):
    """Stored bytes do not hash to the expected sha256 digest; nothing was stored."""


class UnknownNodeError(CorollaError, LookupError):
    """No node has the given id."""

    code = ErrorCode.NODE_UNAVAILABLE


class NodeAuthenticationError(CorollaError, PermissionError):
    """A node presented a token that does not match the one issued at its registration."""

    code = ErrorCode.UNAUTHENTICATED


class BlobNotFoundError(CorollaError, LookupError):
    """The blob store holds no content with the given hash."""

    code = ErrorCode.MESSAGE_UNAVAILABLE


class StorageError(CorollaError, OSError):
    """The database or the blob directory failed (disk full, corrupt file, closed store)."""

    code = ErrorCode.STORAGE


class CorruptStateError(StorageError):
    """The state database is damaged, empty or not an SQLite database: found when it is
    opened, so the link refuses to start rather than fail on every call."""


class StateInUseError(StorageError):
    """Another process (a link or node still running) holds the state directory."""

    code = ErrorCode.CONFLICT
