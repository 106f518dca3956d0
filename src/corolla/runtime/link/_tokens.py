"""Node tokens: what a node presents with every Fleet call, and how the link checks it.

Tokens on the wire are ``<node_id>.<secret>``: the state keeps only the secret's hash,
keyed by node id, so the link reads the id from the token and checks the secret. Once the
state accepted a node's token, the link remembers its hash (:class:`TokenCache`), so the
calls that follow are checked in memory, without a state transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
from collections.abc import Iterable

from corolla.state import NodeAuthenticationError, NodeIdentity
from corolla.transport import bearer_token

__all__ = ["TokenCache", "caller_identity", "join_token", "split_token"]

#: A node id in a token: an unsigned 64-bit integer in decimal.
_NODE_ID = re.compile(r"[0-9]{1,20}")


def join_token(identity: NodeIdentity) -> str:
    """The token a node presents: its id and its secret."""
    return f"{identity.node_id}.{identity.token}"


def split_token(token: str) -> NodeIdentity:
    """The identity a wire token stands for.

    Raises
    ------
    NodeAuthenticationError
        If the token is not ``<node_id>.<secret>``.
    """
    node_id, sep, secret = token.partition(".")
    # ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
    if not sep or not _NODE_ID.fullmatch(node_id) or int(node_id) >= 2**64 or not secret:
        raise NodeAuthenticationError("malformed node token")
    return NodeIdentity(int(node_id), secret)


def caller_identity(metadata: Iterable[tuple[str, str | bytes]] | None) -> NodeIdentity:
    """The identity whose token a call's metadata presents.

    Raises
    ------
    NodeAuthenticationError
        If the metadata holds no bearer token, or a malformed one.
    """
    token = bearer_token(metadata)
    if token is None:
        raise NodeAuthenticationError("missing bearer token")
    return split_token(token)


class TokenCache:
    """The sha256 of each node's secret that the state accepted, by node id.

    A node's token never changes (a node that rejoins keeps its identity), and nodes are
    not deleted, so an entry stays right; it is dropped anyway whenever the node
    registers again or the state refuses a token for it, so the state decides afresh.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._digests: dict[int, bytes] = {}

    def accepts(self, identity: NodeIdentity) -> bool:
        digest = hashlib.sha256(identity.token.encode()).digest()
        with self._lock:
            known = self._digests.get(identity.node_id)
        return known is not None and hmac.compare_digest(known, digest)

    def remember(self, identity: NodeIdentity) -> None:
        digest = hashlib.sha256(identity.token.encode()).digest()
        with self._lock:
            self._digests[identity.node_id] = digest

    def forget(self, node_id: int) -> None:
        with self._lock:
            self._digests.pop(node_id, None)
