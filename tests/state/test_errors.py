"""State errors: where they hang in the one hierarchy, their codes, and pickling."""

from __future__ import annotations

import pickle

import pytest

from corolla.core import (
    CodecError,
    ConfigError,
    CorollaError,
    ErrorCode,
    MessageError,
)
from corolla.state import (
    BlobIntegrityError,
    BlobNotFoundError,
    CorruptStateError,
    InvalidBlobHashError,
    NodeAuthenticationError,
    ReplyRejectedError,
    RunStatusError,
    SchemaVersionError,
    StateInUseError,
    StorageError,
    UnknownMessageError,
    UnknownNodeError,
    UnknownRunError,
)

#: Each error, what else it is, and its (published, stable) code.
ERRORS: list[tuple[type[CorollaError], tuple[type[Exception], ...], ErrorCode]] = [
    (UnknownRunError, (ConfigError, LookupError), ErrorCode.NOT_FOUND),
    (RunStatusError, (ConfigError,), ErrorCode.CONFLICT),
    (SchemaVersionError, (ConfigError,), ErrorCode.CONFIG),
    (InvalidBlobHashError, (ConfigError,), ErrorCode.CONFIG),
    (UnknownMessageError, (MessageError, LookupError), ErrorCode.MESSAGE_UNAVAILABLE),
    (ReplyRejectedError, (MessageError,), ErrorCode.INVALID_REPLY),
    (BlobIntegrityError, (CodecError,), ErrorCode.CODEC),
    (UnknownNodeError, (LookupError,), ErrorCode.NODE_UNAVAILABLE),
    (NodeAuthenticationError, (PermissionError,), ErrorCode.UNAUTHENTICATED),
    (BlobNotFoundError, (LookupError,), ErrorCode.MESSAGE_UNAVAILABLE),
    (StorageError, (OSError,), ErrorCode.STORAGE),
    (CorruptStateError, (StorageError, OSError), ErrorCode.STORAGE),
    (StateInUseError, (StorageError, OSError), ErrorCode.CONFLICT),
]


@pytest.mark.parametrize(("cls", "bases", "code"), ERRORS, ids=lambda x: getattr(x, "__name__", ""))
def test_hierarchy_and_codes(cls, bases, code):
    error = cls("something went wrong")

    assert isinstance(error, CorollaError)
    assert all(isinstance(error, base) for base in bases)
    assert error.code == code
    assert str(error) == "something went wrong"


@pytest.mark.parametrize(("cls", "bases", "code"), ERRORS, ids=lambda x: getattr(x, "__name__", ""))
def test_errors_survive_pickling(cls, bases, code):
    error = cls("crossing a process boundary")

    copy = pickle.loads(pickle.dumps(error))

    assert type(copy) is cls
    assert str(copy) == "crossing a process boundary"
