"""A node's key pair: made once, kept readable by its owner only, read back the same, and
refused when its file holds anything else."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corolla.core import ConfigError
from corolla.trust import NodeKey, public_key_from_text, public_key_text, verify


def test_a_key_is_made_once_and_read_back_the_same(tmp_path: Path) -> None:
    # Act
    first, made = NodeKey.load_or_create(tmp_path / "node")
    again, made_again = NodeKey.load_or_create(tmp_path / "node")

    # Assert: the same identity, in a file only its owner reads
    assert made and not made_again
    assert again.public_text == first.public_text
    mode = stat.S_IMODE(os.stat(tmp_path / "node" / NodeKey.FILE).st_mode)
    assert mode == 0o600


def test_nodes_started_at_once_on_one_state_end_with_one_key(tmp_path: Path) -> None:
    # Arrange
    keys: list[str] = []

    def load() -> None:
        key, _ = NodeKey.load_or_create(tmp_path)
        keys.append(key.public_text)

    threads = [threading.Thread(target=load) for _ in range(8)]

    # Act
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    # Assert
    assert len(keys) == 8 and len(set(keys)) == 1
    assert [p.name for p in tmp_path.iterdir()] == [NodeKey.FILE]


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"", "does not hold a readable private key"),
        (b"-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n", "readable"),
    ],
)
def test_a_key_file_that_holds_no_key_is_refused_naming_it(
    tmp_path: Path, content: bytes, says: str
) -> None:
    # Arrange
    (tmp_path / NodeKey.FILE).write_bytes(content)

    # Act / Assert: never a new identity over one the node cannot read
    with pytest.raises(ConfigError, match=says) as error:
        NodeKey.load_or_create(tmp_path)
    assert NodeKey.FILE in str(error.value)
    assert (tmp_path / NodeKey.FILE).read_bytes() == content


def test_a_key_of_another_kind_is_refused(tmp_path: Path) -> None:
    # Arrange: an EC key where an Ed25519 one belongs
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (tmp_path / NodeKey.FILE).write_bytes(other)

    # Act / Assert
    with pytest.raises(ConfigError, match="not an Ed25519 private key"):
        NodeKey.load_or_create(tmp_path)


@given(st.binary(max_size=4096))
def test_a_signature_verifies_for_its_data_only(data: bytes) -> None:
    # Arrange
    key = NodeKey(_KEY._private)
    signature = key.sign(data)

    # Act / Assert
    assert verify(key.public_key, signature, data)
    assert not verify(key.public_key, signature, data + b"\0")
    assert not verify(_OTHER.public_key, signature, data)


def test_a_public_key_survives_its_text() -> None:
    # Act
    back = public_key_from_text(_KEY.public_text)

    # Assert
    assert public_key_text(back) == _KEY.public_text
    assert _KEY.public_text.startswith("ed25519:") and "=" not in _KEY.public_text


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("ssh-ed25519 AAAA", "starts with 'ed25519:'"),
        ("ed25519:!!!", "not URL-safe base64"),
        ("ed25519:AAAA", "holds 3 bytes"),
    ],
)
def test_a_public_key_text_that_is_not_one_is_refused(text: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        public_key_from_text(text)


def _key() -> NodeKey:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return NodeKey(Ed25519PrivateKey.generate())


_KEY = _key()
_OTHER = _key()
