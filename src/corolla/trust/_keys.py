"""A node's key pair: Ed25519 (``cryptography``), its private key in a PEM file of the
node's state directory, readable by its owner only.

The file is written once, atomically (a temporary file in the same directory, renamed
into place), so a node that dies while making its key leaves none or a whole one. A file
that exists but does not hold an Ed25519 private key is refused, naming the file: a node
never makes itself a new identity over one it cannot read.
"""

from __future__ import annotations

import base64
import binascii
import os
import tempfile
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from ..core import ConfigError

__all__ = ["KEY_PREFIX", "NodeKey", "public_key_from_text", "public_key_text", "verify"]

#: How a public key's text starts: the algorithm, then the raw key in URL-safe base64.
KEY_PREFIX = "ed25519:"
_RAW = serialization.Encoding.Raw
_RAW_PUBLIC = serialization.PublicFormat.Raw


def public_key_text(key: Ed25519PublicKey) -> str:
    """``ed25519:`` and the key's 32 bytes in URL-safe base64, without padding."""
    raw = key.public_bytes(_RAW, _RAW_PUBLIC)
    return KEY_PREFIX + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def public_key_from_text(text: str) -> Ed25519PublicKey:
    """The public key :func:`public_key_text` wrote.

    Raises
    ------
    ConfigError
        If ``text`` is not ``ed25519:`` and 32 bytes in URL-safe base64.
    """
    body = text.strip()
    if not body.startswith(KEY_PREFIX):
        raise ConfigError(f"a node key starts with {KEY_PREFIX!r}, got {text!r}")
    encoded = body[len(KEY_PREFIX) :]
    try:
        raw = base64.b64decode(encoded + "=" * (-len(encoded) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigError(f"node key {text!r} is not URL-safe base64: {exc}") from None
    if len(raw) != 32:
        raise ConfigError(f"node key {text!r} holds {len(raw)} bytes; an Ed25519 key has 32")
    return Ed25519PublicKey.from_public_bytes(raw)


def verify(key: Ed25519PublicKey, signature: bytes, data: bytes) -> bool:
    """Whether ``signature`` is ``key``'s over ``data``."""
    try:
        key.verify(signature, data)
    except InvalidSignature:
        return False
    return True


class NodeKey:
    """A node's Ed25519 key pair.

    Parameters
    ----------
    private_key
        The private key; :meth:`load_or_create` reads or makes one in a state directory.
    """

    #: The file, in a node's state directory, that holds its private key.
    FILE = "node_key.pem"

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private = private_key
        self.public_key = private_key.public_key()

    @property
    def public_text(self) -> str:
        """The public key as an admin registers it (``ed25519:...``)."""
        return public_key_text(self.public_key)

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``data``."""
        return self._private.sign(data)

    @classmethod
    def load_or_create(cls, state_dir: str | os.PathLike[str]) -> tuple[NodeKey, bool]:
        """The key kept in ``state_dir`` (created, with the directory, if missing), and
        whether it was made now.

        Raises
        ------
        ConfigError
            If the key file exists but holds no Ed25519 private key.
        """
        path = Path(state_dir) / cls.FILE
        if path.exists():
            return cls(_read(path)), False
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            key = write_new_key(path)
        except FileExistsError:  # another process made the key meanwhile
            return cls(_read(path)), False
        return cls(key), True


def write_new_key(path: Path) -> Ed25519PrivateKey:
    """A new Ed25519 private key, written to ``path`` (PEM, readable by its owner only)
    whole or not at all: a temporary file in the same directory, fsynced, then linked
    into place.

    Raises
    ------
    FileExistsError
        If ``path`` exists (it is never overwritten).
    """
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as file:  # mkstemp made it readable by its owner only
            file.write(pem)
            file.flush()
            os.fsync(file.fileno())
        os.link(tmp, path)  # fails if the file exists
    finally:
        Path(tmp).unlink(missing_ok=True)
    return key


def _read(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path} does not hold a readable private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path} holds a {type(key).__name__}, not an Ed25519 private key")
    return key
