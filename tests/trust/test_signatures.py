"""Signed bundles: a signature admits the bundle it was made over, by the key that made
it, and nothing else; a signing key is written once, readable by its owner only."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from corolla.core import ConfigError
from corolla.trust import BundleSignature, SigningKey, bundle_message, public_key_from_text

BUNDLE = "1a2b3c4d5e6f" + "0" * 52
OTHER_BUNDLE = "f" * 64


def test_a_key_is_written_for_its_owner_only_and_read_back_the_same(tmp_path: Path) -> None:
    # Act
    made = SigningKey.create(tmp_path / "publisher.pem")
    loaded = SigningKey.load(tmp_path / "publisher.pem")

    # Assert
    assert loaded.public_text == made.public_text
    assert stat.S_IMODE(os.stat(tmp_path / "publisher.pem").st_mode) == 0o600
    public_key_from_text(made.public_text)  # a key text a policy takes


def test_a_key_file_is_never_overwritten(tmp_path: Path) -> None:
    # Arrange
    path = tmp_path / "publisher.pem"
    SigningKey.create(path)
    before = path.read_bytes()

    # Act / Assert
    with pytest.raises(ConfigError, match="never overwritten"):
        SigningKey.create(path)
    assert path.read_bytes() == before


def test_a_missing_key_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="corolla keys create"):
        SigningKey.load(tmp_path / "missing.pem")


def test_a_file_that_holds_no_key_is_refused_naming_it(tmp_path: Path) -> None:
    # Arrange
    path = tmp_path / "not-a-key.pem"
    path.write_text("hello")

    # Act / Assert
    with pytest.raises(ConfigError, match=r"not-a-key\.pem"):
        SigningKey.load(path)


def test_a_valid_signature_verifies_over_its_bundle_only(tmp_path: Path) -> None:
    # Arrange
    key = SigningKey.create(tmp_path / "k.pem")

    # Act
    signature = key.sign_bundle(BUNDLE)

    # Assert
    assert signature.public_key == key.public_text
    assert signature.verifies(BUNDLE)
    assert not signature.verifies(OTHER_BUNDLE)


def test_altered_bytes_or_another_key_do_not_verify(tmp_path: Path) -> None:
    # Arrange
    key = SigningKey.create(tmp_path / "k.pem")
    other = SigningKey.create(tmp_path / "other.pem")
    signature = key.sign_bundle(BUNDLE)
    altered = bytes([signature.signature[0] ^ 1]) + signature.signature[1:]

    # Act / Assert
    assert not BundleSignature(key.public_text, altered).verifies(BUNDLE)
    assert not BundleSignature(other.public_text, signature.signature).verifies(BUNDLE)
    assert not BundleSignature("ed25519:nonsense", signature.signature).verifies(BUNDLE)
    assert not BundleSignature(key.public_text, b"").verifies(BUNDLE)


def test_a_signature_covers_a_domain_separated_message(tmp_path: Path) -> None:
    # Arrange: a signature by the same key over the bare hash is not a bundle signature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.generate()
    key = SigningKey(private)
    bare = private.sign(BUNDLE.encode())

    # Act / Assert
    assert bundle_message(BUNDLE) == b"corolla-bundle-v1:" + BUNDLE.encode()
    assert not BundleSignature(key.public_text, bare).verifies(BUNDLE)


@pytest.mark.parametrize("sha256", ["", "abc", "A" * 64, "g" * 64, BUNDLE + "0"])
def test_a_bundle_hash_that_is_not_one_is_refused(tmp_path: Path, sha256: str) -> None:
    key = SigningKey.create(tmp_path / "k.pem")
    with pytest.raises(ConfigError, match="64 lower-case hex digits"):
        key.sign_bundle(sha256)
