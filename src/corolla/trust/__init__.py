"""Trust: who takes part in a federation, and how they prove it.

A node's identity is an Ed25519 key pair, made on its first start and kept in its state
directory (:class:`NodeKey`); the link knows a node by its public key, written as
``ed25519:`` and the key's 32 bytes in URL-safe base64 (:func:`public_key_text`).
"""

from ._keys import KEY_PREFIX, NodeKey, public_key_from_text, public_key_text, verify

__all__ = ["KEY_PREFIX", "NodeKey", "public_key_from_text", "public_key_text", "verify"]
