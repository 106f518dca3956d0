"""Signed requests: how a node proves, call by call, that a request is its own, whole and
fresh.

A node signs each request with its Ed25519 key over a domain tag, the call's method, a
timestamp, a random nonce and the SHA-256 of the request's bytes (its deterministic
protobuf serialization; empty for a stream of requests, whose items are content-addressed
arrays or carry signatures of their own). The timestamp, nonce and signature travel in
the call's metadata (:data:`TIMESTAMP_KEY`, :data:`NONCE_KEY`, :data:`SIGNATURE_KEY`).
After its registration, a node authenticates the same text with the HMAC of a session
key it agreed on with the link (:data:`MAC_KEY` in place of the signature; see
``_sessions``).

The link (:class:`RequestVerifier`) refuses a request whose signature does not check out
with the node's registered key (altered, or signed by another key) or whose tag does not
with the node's session key, whose timestamp is
further than ``max_age_s`` from its own clock (delayed, or a clock that is wrong), or
whose nonce it has seen within that window (replayed). Nonces are kept only as long as
their timestamps are acceptable, so the memory they take is bounded by the request rate.

Array bytes are never signed: a reply names its arrays by hash, the reply is signed, and
the link checks every array it stores against its hash.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..core import AuthenticationError
from ._keys import NodeKey, verify

if TYPE_CHECKING:
    from ._sessions import SessionKey

__all__ = [
    "MAC_KEY",
    "NONCE_KEY",
    "PUBLIC_KEY_KEY",
    "REPLY_ITEM_METHOD",
    "SIGNATURE_KEY",
    "TIMESTAMP_KEY",
    "RequestSignature",
    "fresh_stamp",
    "RequestVerifier",
    "request_body",
    "sign_request",
    "signed_text",
]

#: Metadata keys of a signed call (gRPC metadata keys are lower-case).
TIMESTAMP_KEY = "corolla-timestamp"
NONCE_KEY = "corolla-nonce"
SIGNATURE_KEY = "corolla-signature"
#: In place of the signature: the HMAC-SHA256 under the node's session key.
MAC_KEY = "corolla-mac"
#: The public key a node registers with (on RegisterNode only).
PUBLIC_KEY_KEY = "corolla-node-key"
#: What a reply written on a ``SendReplies`` stream is signed as (its item signature).
REPLY_ITEM_METHOD = "/corolla.v1.Fleet/SendReplies#item"

_SIGNED_KEYS = frozenset({TIMESTAMP_KEY, NONCE_KEY, SIGNATURE_KEY, MAC_KEY})
_DOMAIN = b"corolla-request-v1\n"
_MAX_FIELD_CHARS = 128
#: Nonces a key may have kept before the first pruning of the old ones.
_FIRST_PRUNE = 64


def request_body(request: Any) -> bytes:
    """The bytes a request is signed over: a protobuf message's deterministic
    serialization (which both ends compute alike), or bytes as they are."""
    if isinstance(request, bytes | bytearray | memoryview):
        return bytes(request)
    return bytes(request.SerializeToString(deterministic=True))


def signed_text(method: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    """What a node signs for one request."""
    digest = hashlib.sha256(body).hexdigest()
    return _DOMAIN + f"{method}\n{timestamp}\n{nonce}\n{digest}".encode()


def fresh_stamp(now: float | None = None) -> tuple[str, str]:
    """The timestamp (``now``, or the wall clock's) and a random nonce of a request."""
    return f"{time.time() if now is None else now:.6f}", secrets.token_urlsafe(16)


class RequestSignature:
    """The timestamp, nonce and signature of one request: an Ed25519 signature by the
    node's key, or with ``mac`` the HMAC under its session key (URL-safe base64)."""

    __slots__ = ("mac", "nonce", "signature", "timestamp")

    def __init__(self, timestamp: str, nonce: str, signature: str, *, mac: bool = False) -> None:
        self.timestamp = timestamp
        self.nonce = nonce
        self.signature = signature
        self.mac = mac

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The metadata entries that carry it."""
        return (
            (TIMESTAMP_KEY, self.timestamp),
            (NONCE_KEY, self.nonce),
            (MAC_KEY if self.mac else SIGNATURE_KEY, self.signature),
        )

    @classmethod
    def from_metadata(cls, metadata: Iterable[tuple[str, str | bytes]] | None) -> RequestSignature:
        """The signature a call's metadata carries.

        Raises
        ------
        AuthenticationError
            If an entry is missing or malformed.
        """
        found: dict[str, str] = {}
        for key, value in metadata or ():
            if key in _SIGNED_KEYS and isinstance(value, str):
                found[key] = value
        if SIGNATURE_KEY in found and MAC_KEY in found:
            raise AuthenticationError(
                f"the request carries both a signature and a session tag ({SIGNATURE_KEY} and "
                f"{MAC_KEY}): a node sends one of them"
            )
        mac = MAC_KEY in found
        wanted = (TIMESTAMP_KEY, NONCE_KEY, MAC_KEY if mac else SIGNATURE_KEY)
        missing = [k for k in wanted if k not in found]
        if missing:
            raise AuthenticationError(
                f"the request is not signed (no {', '.join(missing)}): this link admits only "
                "nodes that sign their requests with a registered key"
            )
        return cls(found[TIMESTAMP_KEY], found[NONCE_KEY], found[wanted[2]], mac=mac)


def sign_request(
    key: NodeKey, method: str, body: bytes, *, now: float | None = None
) -> RequestSignature:
    """Sign one request of ``method`` (e.g. ``/corolla.v1.Fleet/GetRun``) whose
    serialized bytes are ``body``."""
    timestamp, nonce = fresh_stamp(now)
    signature = key.sign(signed_text(method, timestamp, nonce, body))
    return RequestSignature(timestamp, nonce, base64.urlsafe_b64encode(signature).decode("ascii"))


class RequestVerifier:
    """Checks signed requests and remembers their nonces while they could be replayed.

    Parameters
    ----------
    max_age_s
        How far (either way) a request's timestamp may be from the link's clock.
    clock
        The link's wall clock.
    max_nonces
        The most nonces kept for one key within the window: a node making requests
        faster than that is refused until older ones age out.
    """

    def __init__(
        self,
        max_age_s: float = 60.0,
        *,
        clock: Callable[[], float] = time.time,
        max_nonces: int = 100_000,
    ) -> None:
        self.max_age_s = max_age_s
        self._clock = clock
        self._max_nonces = max_nonces
        self._lock = threading.Lock()
        self._seen: dict[str, dict[str, float]] = {}
        self._prune_at: dict[str, int] = {}

    def check(
        self,
        key: Ed25519PublicKey,
        key_id: str,
        method: str,
        signature: RequestSignature,
        body: bytes,
        session: SessionKey | None = None,
    ) -> None:
        """Accept one request of ``method`` signed by ``key`` (known as ``key_id``), or
        authenticated with the node's ``session`` key.

        Raises
        ------
        AuthenticationError
            If the signature or tag does not check out (or the request has a tag and
            the link holds no session key for the node), the request is too old or too
            new, or its nonce was seen before.
        """
        if len(signature.nonce) > _MAX_FIELD_CHARS or len(signature.timestamp) > _MAX_FIELD_CHARS:
            raise AuthenticationError("the request's nonce or timestamp is malformed")
        try:
            signed_at = float(signature.timestamp)
            raw = base64.urlsafe_b64decode(signature.signature.encode("ascii"))
        except (ValueError, binascii.Error, UnicodeEncodeError):
            raise AuthenticationError("the request's timestamp or signature is malformed") from None
        now = self._clock()
        if not abs(now - signed_at) <= self.max_age_s:
            raise AuthenticationError(
                f"the request was signed {now - signed_at:+.0f} s from the link's time; the "
                f"link accepts requests signed within {self.max_age_s:.0f} s (a delayed or "
                "replayed request, or a clock that is wrong)"
            )
        text = signed_text(method, signature.timestamp, signature.nonce, body)
        if signature.mac:
            if session is None:
                raise AuthenticationError(
                    "the request is authenticated with a session key this link does not "
                    "hold (agreed with an earlier link process, or at a registration since "
                    "replaced): the node registers again"
                )
            if not session.matches(raw, text):
                raise AuthenticationError(
                    "the request's session tag does not check out: it was altered, or made "
                    "with another key than the node's session key"
                )
        elif not verify(key, raw, text):
            raise AuthenticationError(
                "the request's signature does not check out: it was altered, or signed with "
                "another key than the node's registered one"
            )
        self._remember(key_id, signature.nonce, signed_at, now)

    def _remember(self, key_id: str, nonce: str, signed_at: float, now: float) -> None:
        with self._lock:
            seen = self._seen.setdefault(key_id, {})
            if nonce in seen:
                raise AuthenticationError("a replayed request: its nonce was used before")
            if len(seen) >= self._prune_at.get(key_id, _FIRST_PRUNE):
                # Amortized: pruned when it doubled since the last pruning, so a key keeps
                # at most about twice the nonces it signed within the window.
                oldest = now - self.max_age_s
                for old in [n for n, t in seen.items() if t < oldest]:
                    del seen[old]
                self._prune_at[key_id] = max(_FIRST_PRUNE, 2 * len(seen))
                if len(seen) >= self._max_nonces:
                    raise AuthenticationError(
                        f"more than {self._max_nonces} requests within {self.max_age_s:.0f} s "
                        "from one key: slow down"
                    )
            seen[nonce] = signed_at

    def forget(self, key_id: str) -> None:
        """Drop the nonces kept for ``key_id`` (a key that was unregistered)."""
        with self._lock:
            self._seen.pop(key_id, None)
            self._prune_at.pop(key_id, None)
