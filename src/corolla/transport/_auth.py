"""Bearer tokens in gRPC metadata: how a node (or a Control client) proves who it is.

RegisterNode returns a token; every other call carries ``authorization: Bearer <token>``
in its metadata. The link maps the token back to the node, so requests carry no node id
that could disagree with it.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["AUTHORIZATION_KEY", "bearer_metadata", "bearer_token"]

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
