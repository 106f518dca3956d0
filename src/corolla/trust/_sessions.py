"""Session keys: how a registered node authenticates its requests after the first one
without an Ed25519 signature each.

A node's ``RegisterNode`` request is signed with its Ed25519 key, as ever, and offers a
fresh X25519 public key in its body (``session_key``), so the signature covers it. The
link, having checked that signature, answers with an X25519 public key of its own;
each side computes the X25519 shared secret and derives a 32-byte session key from it
with HKDF-SHA256, over both public keys and the node's registered key. From
then on the node sends, in place of each request's signature, the HMAC-SHA256 of the
same text (the method, the timestamp, the nonce and the SHA-256 of the request's bytes)
under that key, and the link checks it as it checks a signature: the timestamp within
its window, the nonce never seen, the tag equal. An HMAC costs the link about 3 µs where
an Ed25519 verification costs about 130 µs, a difference that a thousand nodes replying
every round make the larger part of a round's authentication.

Why it holds without TLS. A network attacker who reads the registration learns both
public keys, not the shared secret. One who replaces the link's public key in the
answer shares a key with the node, not with the link, and so can make the node's own
requests fail but cannot make the link accept one: the link's key comes from the
node's offer, which only the holder of the node's Ed25519 key can have signed. The
node and the link keep the session key in memory only: a node registers again at each
connection, and a link that restarts holds no sessions, so its nodes' tags are refused
until they do.
"""

from __future__ import annotations

import base64
import hmac

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..core import AuthenticationError
from ._requests import RequestSignature, fresh_stamp, signed_text

__all__ = ["SessionKey", "SessionOffer", "accept_session"]

_INFO = b"corolla-session-v1\n"
_PUBLIC_BYTES = 32
_RAW = serialization.Encoding.Raw
_RAW_PUBLIC = serialization.PublicFormat.Raw


class SessionKey:
    """The key a node and the link agreed on at the node's registration.

    Parameters
    ----------
    secret
        The 32 bytes HKDF derived (see :class:`SessionOffer` and :func:`accept_session`).
    """

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def tag(self, text: bytes) -> bytes:
        """The HMAC-SHA256 of ``text``."""
        return hmac.digest(self._secret, text, "sha256")

    def matches(self, tag: bytes, text: bytes) -> bool:
        """Whether ``tag`` is the HMAC of ``text`` (compared in constant time)."""
        return hmac.compare_digest(self.tag(text), tag)

    def sign(self, method: str, body: bytes, *, now: float | None = None) -> RequestSignature:
        """Authenticate one request of ``method`` whose serialized bytes are ``body``, as
        :func:`~corolla.trust.sign_request` signs it."""
        timestamp, nonce = fresh_stamp(now)
        tag = self.tag(signed_text(method, timestamp, nonce, body))
        encoded = base64.urlsafe_b64encode(tag).decode("ascii")
        return RequestSignature(timestamp, nonce, encoded, mac=True)


class SessionOffer:
    """A node's half of a session key's agreement: a fresh X25519 key pair, whose public
    key goes in the ``RegisterNode`` request (:attr:`public`)."""

    def __init__(self) -> None:
        self._private = X25519PrivateKey.generate()
        self.public = self._private.public_key().public_bytes(_RAW, _RAW_PUBLIC)

    def agree(self, link_public: bytes, node_key: str) -> SessionKey:
        """The session key, from the link's answer (its public key) and the node's
        registered key (``ed25519:...``).

        Raises
        ------
        AuthenticationError
            If ``link_public`` is not an X25519 public key that makes a shared secret.
        """
        shared = _exchange(self._private, link_public)
        return _derive(shared, self.public, link_public, node_key)


def accept_session(offer: bytes, node_key: str) -> tuple[SessionKey, bytes]:
    """The link's half of an agreement: the session key for the node registering with
    ``node_key`` that offered ``offer``, and the link's public key to answer with.

    Raises
    ------
    AuthenticationError
        If ``offer`` is not an X25519 public key that makes a shared secret.
    """
    private = X25519PrivateKey.generate()
    public = private.public_key().public_bytes(_RAW, _RAW_PUBLIC)
    shared = _exchange(private, offer)
    return _derive(shared, offer, public, node_key), public


def _exchange(private: X25519PrivateKey, peer: bytes) -> bytes:
    if len(peer) != _PUBLIC_BYTES:
        raise AuthenticationError(
            f"a session key offer is an X25519 public key of {_PUBLIC_BYTES} bytes, got {len(peer)}"
        )
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(peer))
    except ValueError:  # a low-order point: the shared secret would be all zeros
        raise AuthenticationError("a session key offer is not a usable X25519 key") from None


def _derive(shared: bytes, node_public: bytes, link_public: bytes, node_key: str) -> SessionKey:
    info = b"".join((_INFO, node_public, link_public, node_key.encode("ascii")))
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info)
    return SessionKey(hkdf.derive(shared))
