"""Bearer tokens in gRPC metadata: how a node (or a Control client) proves who it is.

RegisterNode returns a token; every other call carries ``authorization: Bearer <token>``
in its metadata. The link maps the token back to the node, so requests carry no node id
that could disagree with it.

Also what a node's reply is signed over (:func:`signed_reply_body`) on a link that
requires signed requests.
"""

from __future__ import annotations

from collections.abc import Iterable

from ._encoded import sha256_of
from ._proto import message_pb2

__all__ = ["AUTHORIZATION_KEY", "bearer_metadata", "bearer_token", "signed_reply_body"]

#: The metadata key (gRPC metadata keys are lower-case).
AUTHORIZATION_KEY = "authorization"
_SCHEME = "bearer "


def bearer_metadata(token: str) -> tuple[tuple[str, str]]:
    """Metadata to pass as ``metadata=`` on a call."""
    return ((AUTHORIZATION_KEY, f"Bearer {token}"),)


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The token of an ``authorization: Bearer`` entry (e.g. of
    ``context.invocation_metadata()``), or None if there is none."""
    for key, value in metadata or ():
        if (
            key.lower() == AUTHORIZATION_KEY
            and isinstance(value, str)
            and value[: len(_SCHEME)].lower() == _SCHEME
        ):
            return value[len(_SCHEME) :].strip() or None
    return None


def signed_reply_body(message: message_pb2.Message, content_sha256: str | None = None) -> bytes:
    """What a reply written on a ``SendReplies`` stream is signed over (in place of the
    bytes of a whole request): its metadata's deterministic serialization, then the kind
    of its body (``content``, ``error`` or ``none``) and the SHA-256 of the body's
    deterministic serialization, a line each.

    A reply's content is so signed by its hash, which the link computes to store it
    anyway (``content_sha256``, when the caller has it): the array bytes it carries
    inline are hashed once, not once more for the signature, and each of them is
    checked against the hash its entry declares.
    """
    kind: str = message.WhichOneof("body") or "none"
    if kind == "content":
        digest = content_sha256 or sha256_of(message.content.SerializeToString(deterministic=True))
    elif kind == "error":
        digest = sha256_of(message.error.SerializeToString(deterministic=True))
    else:
        digest = ""
    metadata = message.metadata.SerializeToString(deterministic=True)
    return b"%s\n%s\n%s" % (metadata, kind.encode("ascii"), digest.encode("ascii"))
