from __future__ import annotations

import pytest

from corolla.transport import AUTHORIZATION_KEY, bearer_metadata, bearer_token


def test_round_trip() -> None:
    assert bearer_token(bearer_metadata("abc")) == "abc"


@pytest.mark.parametrize(
    ("metadata", "token"),
    [
        ([("authorization", "bearer xyz")], "xyz"),
        ([("user-agent", "x"), (AUTHORIZATION_KEY, "Bearer  t ")], "t"),
        ([("authorization", "Basic abc")], None),
        ([("authorization", "Bearer ")], None),
        ([("authorization-bin", b"Bearer x")], None),
        ([], None),
        (None, None),
    ],
)
def test_bearer_token(metadata: list[tuple[str, str | bytes]] | None, token: str | None) -> None:
    assert bearer_token(metadata) == token
