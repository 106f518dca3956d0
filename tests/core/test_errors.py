from __future__ import annotations

import pickle

import pytest

import corolla.core
from corolla.core import (
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
    _errors,
)

#: Each error, the built-in it also is, and its code. Codes are published: never change them.
ERRORS: list[tuple[type[CorollaError], type[Exception], int]] = [
    (ConfigError, ValueError, 20),
    (RecordError, ValueError, 21),
    (CodecError, ValueError, 22),
    (MessageError, ValueError, 23),
    (AppLoadError, ImportError, 24),
    (MissingExtraError, ImportError, 25),
    (AggregationError, ValueError, 26),
    (NotEnoughNodesError, RuntimeError, 27),
    (ExecutionError, RuntimeError, 28),
    (AuthenticationError, PermissionError, 31),
    (PermissionDeniedError, PermissionError, 34),
]

#: Codes carried by error replies rather than raised.
REPLY_CODES = {
    "UNKNOWN": 0,
    "CLIENT_APP_RAISED": 1,
    "MESSAGE_UNAVAILABLE": 2,
    "REPLY_UNAVAILABLE": 3,
    "NODE_UNAVAILABLE": 4,
    "TIMEOUT": 5,
    "NO_HANDLER": 6,
    "INVALID_REPLY": 7,
    "WORKER_CRASHED": 8,
}

#: Codes of errors raised by higher layers (state, transport), pinned here all the same.
LAYER_CODES = {
    "NOT_FOUND": 29,
    "CONFLICT": 30,
    "UNAUTHENTICATED": 31,
    "STORAGE": 32,
    "TRANSPORT": 33,
}


def make(cls: type[CorollaError]) -> CorollaError:
    return cls("torch", "torch") if cls is MissingExtraError else cls("what went wrong")


@pytest.mark.parametrize(
    ("cls", "builtin", "code"), ERRORS, ids=lambda x: getattr(x, "__name__", x)
)
def test_error_derives_from_base_and_builtin(
    cls: type[CorollaError], builtin: type[Exception], code: int
) -> None:
    error = make(cls)

    assert isinstance(error, CorollaError)
    assert isinstance(error, builtin)
    assert error.code == code
    assert isinstance(error.code, ErrorCode)


def test_every_exported_error_is_listed() -> None:
    exported = {
        obj
        for name in corolla.core.__all__
        if isinstance(obj := getattr(corolla.core, name), type) and issubclass(obj, CorollaError)
    }

    assert exported - {CorollaError} == {cls for cls, _, _ in ERRORS}
    assert CorollaError.code is ErrorCode.UNKNOWN


def test_codes_are_unique_and_stable() -> None:
    codes = [cls.code for cls, _, _ in ERRORS]

    assert len(set(codes)) == len(codes)
    assert len(ErrorCode.__members__) == len(list(ErrorCode))  # no aliases
    expected = REPLY_CODES | LAYER_CODES | {cls.code.name: code for cls, _, code in ERRORS}
    assert {member.name: int(member) for member in ErrorCode} == expected


def test_module_docstring_draws_every_error() -> None:
    doc = _errors.__doc__ or ""

    for cls, builtin, _ in ERRORS:
        assert f"{cls.__name__} ({builtin.__name__})" in doc


def test_missing_extra_names_the_extra() -> None:
    error = MissingExtraError("ray", "ray")

    assert str(error) == "ray is not installed; install it with: pip install 'corolla[ray]'"
    assert (error.package, error.extra) == ("ray", "ray")
    assert "corolla[sklearn]" in str(MissingExtraError("scikit-learn", "sklearn"))


@pytest.mark.parametrize("cls", [cls for cls, _, _ in ERRORS], ids=lambda c: c.__name__)
def test_errors_survive_pickling(cls: type[CorollaError]) -> None:
    error = make(cls)

    loaded = pickle.loads(pickle.dumps(error))

    assert type(loaded) is cls
    assert str(loaded) == str(error)
    assert loaded.code == error.code


def test_missing_extra_keeps_its_fields_through_pickling() -> None:
    loaded = pickle.loads(pickle.dumps(MissingExtraError("flwr", "flower")))

    assert (loaded.package, loaded.extra) == ("flwr", "flower")


def test_translated_errors_keep_their_cause() -> None:
    try:
        try:
            raise KeyError("x")
        except KeyError as exc:
            raise ConfigError("bad x") from exc
    except ConfigError as error:
        assert isinstance(error.__cause__, KeyError)
