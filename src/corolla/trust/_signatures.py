"""Signed app bundles: a publisher's Ed25519 key signs a bundle's SHA-256, and a link or
node whose policy trusts that key admits the bundle without listing its hash.

A signature covers ``corolla-bundle-v1:`` followed by the bundle's SHA-256 in lower-case
hex (:func:`bundle_message`): the prefix keeps a bundle signature from being taken for
a signature by the same key over anything else. A signing key is kept in a PEM file
readable by its owner only (``corolla keys create FILE``).
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..core import ConfigError
from ._keys import _read, public_key_from_text, public_key_text, verify, write_new_key

__all__ = ["BundleSignature", "SigningKey", "bundle_message", "check_bundle_hash"]

_DOMAIN = b"corolla-bundle-v1:"
_SHA256 = re.compile(r"[0-9a-f]{64}")


def check_bundle_hash(sha256: str) -> str:
    """``sha256``, checked to be a SHA-256 in lower-case hex.

    Raises
    ------
    ConfigError
        If it is not 64 lower-case hex digits.
    """
    if not _SHA256.fullmatch(sha256):
        raise ConfigError(
            f"a bundle hash is a SHA-256 in 64 lower-case hex digits, got {sha256[:80]!r}"
        )
    return sha256


def bundle_message(sha256: str) -> bytes:
    """What a signature over the bundle whose SHA-256 is ``sha256`` covers.

    Raises
    ------
    ConfigError
        If ``sha256`` is not 64 lower-case hex digits.
    """
    return _DOMAIN + check_bundle_hash(sha256).encode("ascii")


@dataclasses.dataclass(frozen=True)
class BundleSignature:
    """A signature over a bundle, by the key whose public text is ``public_key``."""

    public_key: str
    signature: bytes

    def verifies(self, sha256: str) -> bool:
        """Whether this is a valid signature by ``public_key`` over the bundle ``sha256``
        (False for a key text that is no Ed25519 key)."""
        try:
            key = public_key_from_text(self.public_key)
            message = bundle_message(sha256)
        except ConfigError:
            return False
        return verify(key, self.signature, message)


class SigningKey:
    """An Ed25519 key that signs app bundles.

    Parameters
    ----------
    private_key
        The private key; :meth:`load` reads one from a file, :meth:`create` makes one.
    """

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private = private_key

    @property
    def public_text(self) -> str:
        """The public key as a policy trusts it (``ed25519:...``)."""
        return public_key_text(self._private.public_key())

    def sign_bundle(self, sha256: str) -> BundleSignature:
        """This key's signature over the bundle whose SHA-256 is ``sha256``.

        Raises
        ------
        ConfigError
            If ``sha256`` is not 64 lower-case hex digits.
        """
        return BundleSignature(self.public_text, self._private.sign(bundle_message(sha256)))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SigningKey:
        """The key in ``path``.

        Raises
        ------
        ConfigError
            If the file is missing or holds no Ed25519 private key.
        """
        path = Path(path)
        if not path.is_file():
            raise ConfigError(
                f"no signing key at {path}: make one with `corolla keys create {path}`"
            )
        return cls(_read(path))

    @classmethod
    def create(cls, path: str | os.PathLike[str]) -> SigningKey:
        """A new key, written to ``path`` readable by its owner only.

        Raises
        ------
        ConfigError
            If ``path`` exists (a key is never overwritten) or its directory does not.
        """
        path = Path(path)
        if path.exists() or path.is_symlink():
            raise ConfigError(f"{path} exists: a signing key is never overwritten")
        if not path.parent.is_dir():
            raise ConfigError(f"cannot write {path}: the directory {path.parent} does not exist")
        try:
            key = write_new_key(path)
        except FileExistsError:
            raise ConfigError(f"{path} exists: a signing key is never overwritten") from None
        return cls(key)
