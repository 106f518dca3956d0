"""Node tokens: the wire form, and the link's memory of the tokens the state accepted."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corolla.runtime.link._tokens import TokenCache, caller_identity, join_token, split_token
from corolla.state import NodeAuthenticationError, NodeIdentity
from corolla.transport import bearer_metadata


@given(st.integers(0, 2**64 - 1), st.text(alphabet="abcdefXYZ0123456789-_.", min_size=1))
def test_a_token_names_its_node_and_secret(node_id: int, secret: str) -> None:
    identity = NodeIdentity(node_id, secret)

    assert split_token(join_token(identity)) == identity


@pytest.mark.parametrize(
    "token",
    [
        "",
        "12",
        "12.",
        ".secret",
        "x12.secret",
        "-1.secret",
        "².secret",  # a digit to str.isdigit(), not to int()
        "١٢.secret",  # digits, but not ASCII ones
        f"{2**64}.secret",
        "1" * 400 + ".secret",
    ],
)
def test_a_malformed_token_is_refused(token: str) -> None:
    with pytest.raises(NodeAuthenticationError, match="malformed node token"):
        split_token(token)


def test_a_call_without_a_token_is_refused() -> None:
    with pytest.raises(NodeAuthenticationError, match="missing bearer token"):
        caller_identity([("other", "value")])

    assert caller_identity(bearer_metadata("7.s3cret")) == NodeIdentity(7, "s3cret")


def test_the_cache_accepts_only_the_token_it_remembers_until_it_forgets_it() -> None:
    cache = TokenCache()
    good, wrong = NodeIdentity(5, "right"), NodeIdentity(5, "wrong")

    before = cache.accepts(good)
    cache.remember(good)
    remembered = (cache.accepts(good), cache.accepts(wrong))
    cache.forget(5)

    assert not before
    assert remembered == (True, False)
    assert not cache.accepts(good)
