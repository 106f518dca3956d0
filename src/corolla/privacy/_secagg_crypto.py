"""The cryptographic primitives of SecAgg+, as pure functions.

- Key agreement: X25519 key pairs; a shared secret is turned into a 32-byte key by
  HKDF-SHA256 whose ``info`` names what the key is for, so one agreement never yields the
  same key for two purposes.
- Authenticated encryption of the secret shares nodes send each other through the server:
  ChaCha20-Poly1305 with a random 96-bit nonce, the sender's and receiver's ids (and the
  round) bound as associated data, so the server can neither read, alter nor redirect a
  share.
- Shamir secret sharing of 32-byte secrets over the prime field of the Mersenne prime
  ``2**521 - 1`` (larger than any 32-byte secret, so every secret is a field element).
- A PRG expanding a 32-byte seed into a vector of uint32 (the AES-128-CTR keystream, read
  little-endian): the pairwise and self masks.
- Fixed-point quantization of real vectors into the ring Z_(2**32), with the worst-case
  error of the dequantized sum stated in :func:`quantize`.

Errors: a ciphertext that does not authenticate and shares that cannot give a secret raise
:class:`~corolla.core.MessageError` and :class:`~corolla.core.AggregationError`.
"""

from __future__ import annotations

import dataclasses
import secrets
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..core import AggregationError, ConfigError, MessageError

__all__ = [
    "PRIME",
    "SECRET_BYTES",
    "KeyPair",
    "Share",
    "agree",
    "agree_keys",
    "combine_shares",
    "decrypt",
    "dequantize",
    "encrypt",
    "expand_mask",
    "generate_key_pair",
    "private_key",
    "public_key",
    "quantize",
    "split_secret",
]

#: The field of Shamir sharing: the Mersenne prime 2**521 - 1.
PRIME = (1 << 521) - 1
#: Size of every secret shared (X25519 private keys, mask seeds) and of derived keys.
SECRET_BYTES = 32
_SHARE_BYTES = 66  # a field element: 521 bits
_NONCE_BYTES = 12
_RAW = serialization.Encoding.Raw
_RAW_PUBLIC = serialization.PublicFormat.Raw
_RAW_PRIVATE = serialization.PrivateFormat.Raw
_NO_ENCRYPTION = serialization.NoEncryption()


@dataclasses.dataclass(frozen=True)
class KeyPair:
    """An X25519 key pair, both keys as 32 raw bytes."""

    private: bytes
    public: bytes


def generate_key_pair() -> KeyPair:
    """A fresh X25519 key pair from the operating system's randomness."""
    key = X25519PrivateKey.generate()
    return KeyPair(
        key.private_bytes(_RAW, _RAW_PRIVATE, _NO_ENCRYPTION),
        key.public_key().public_bytes(_RAW, _RAW_PUBLIC),
    )


def public_key(private: bytes) -> bytes:
    """The X25519 public key of the raw private key ``private``.

    Raises
    ------
    MessageError
        If ``private`` is not 32 bytes.
    """
    return _private(private).public_key().public_bytes(_RAW, _RAW_PUBLIC)


def _private(private: bytes) -> X25519PrivateKey:
    if len(private) != SECRET_BYTES:
        raise MessageError(f"an X25519 private key is 32 bytes, got {len(private)}")
    return X25519PrivateKey.from_private_bytes(private)


def private_key(private: bytes) -> X25519PrivateKey:
    """The raw private key ``private`` loaded, for several :func:`agree` calls (loading
    costs as much as an agreement).

    Raises
    ------
    MessageError
        If ``private`` is not 32 bytes.
    """
    return _private(private)


def agree(private: bytes | X25519PrivateKey, peer_public: bytes, info: bytes) -> bytes:
    """The 32-byte key that ``private``'s owner and ``peer_public``'s owner share:
    HKDF-SHA256 (no salt) of their X25519 shared secret, for the purpose ``info``.

    Raises
    ------
    MessageError
        If a key is not 32 bytes, or ``peer_public`` is a low-order point (its shared
        secret would be all zeros, known to anyone).
    """
    return agree_keys(private, peer_public, [info])[0]


def agree_keys(
    private: bytes | X25519PrivateKey, peer_public: bytes, infos: Sequence[bytes]
) -> list[bytes]:
    """:func:`agree`'s key for each purpose of ``infos``, from one X25519 agreement.

    Raises
    ------
    MessageError
        As :func:`agree`.
    """
    if len(peer_public) != SECRET_BYTES:
        raise MessageError(f"an X25519 public key is 32 bytes, got {len(peer_public)}")
    key = _private(private) if isinstance(private, bytes) else private
    try:
        shared = key.exchange(X25519PublicKey.from_public_bytes(peer_public))
    except ValueError as exc:
        raise MessageError(f"X25519 agreement refused the peer's public key: {exc}") from exc
    return [HKDF(hashes.SHA256(), SECRET_BYTES, salt=None, info=i).derive(shared) for i in infos]


def encrypt(key: bytes, plaintext: bytes, associated_data: bytes) -> bytes:
    """``nonce || ChaCha20-Poly1305(plaintext)``, authenticating ``associated_data`` too."""
    nonce = secrets.token_bytes(_NONCE_BYTES)
    return nonce + ChaCha20Poly1305(key).encrypt(nonce, plaintext, associated_data)


def decrypt(key: bytes, ciphertext: bytes, associated_data: bytes) -> bytes:
    """The plaintext of :func:`encrypt`'s ``ciphertext``.

    Raises
    ------
    MessageError
        If the ciphertext was altered, or encrypted under another key or associated data.
    """
    nonce, sealed = ciphertext[:_NONCE_BYTES], ciphertext[_NONCE_BYTES:]
    try:
        return ChaCha20Poly1305(key).decrypt(nonce, sealed, associated_data)
    except (InvalidTag, ValueError) as exc:
        raise MessageError(
            "a secret share does not authenticate: it was altered, or not encrypted for "
            "this node by the node it claims to come from"
        ) from exc


@dataclasses.dataclass(frozen=True)
class Share:
    """One Shamir share: the secret polynomial's value ``y`` at ``x`` (both in the field)."""

    x: int
    y: int

    def to_bytes(self) -> bytes:
        """The share's ``y`` as 66 big-endian bytes (``x`` is known from who holds it)."""
        return self.y.to_bytes(_SHARE_BYTES, "big")

    @classmethod
    def from_bytes(cls, x: int, data: bytes) -> Share:
        """The share at ``x`` whose ``y`` is ``data``.

        Raises
        ------
        MessageError
            If ``data`` is not a field element's 66 bytes.
        """
        y = int.from_bytes(data, "big")
        if len(data) != _SHARE_BYTES or y >= PRIME:
            raise MessageError(f"a share is {_SHARE_BYTES} bytes below the prime")
        return cls(x, y)


def split_secret(secret: bytes, threshold: int, xs: Sequence[int]) -> list[Share]:
    """Shamir shares of ``secret`` at the points ``xs``: any ``threshold`` of them give the
    secret back, fewer reveal nothing of it.

    Raises
    ------
    ConfigError
        If the secret is not 32 bytes, ``threshold`` is outside ``1..len(xs)``, or the
        points are not distinct, non-zero field elements.
    """
    if len(secret) != SECRET_BYTES:
        raise ConfigError(f"a shared secret is {SECRET_BYTES} bytes, got {len(secret)}")
    if not 1 <= threshold <= len(xs):
        raise ConfigError(f"threshold must be in 1..{len(xs)} (the shares), got {threshold}")
    if len(set(xs)) != len(xs) or any(not 0 < x < PRIME for x in xs):
        raise ConfigError(f"share points must be distinct and in 1..PRIME-1, got {list(xs)}")
    coefficients = [int.from_bytes(secret, "big")]
    coefficients += [secrets.randbelow(PRIME) for _ in range(threshold - 1)]
    shares = []
    for x in xs:
        y = 0
        for c in reversed(coefficients):  # Horner
            y = (y * x + c) % PRIME
        shares.append(Share(x, y))
    return shares


def _interpolate_at(points: Sequence[Share], at: int) -> int:
    """The value at ``at`` of the polynomial through ``points`` (Lagrange).

    The terms ``y_i n_i / d_i`` are summed over their common denominator, so the whole
    interpolation takes one modular inversion instead of one per point.
    """
    numerators, denominators = [], []
    for i, share in enumerate(points):
        numerator, denominator = 1, 1
        for j, other in enumerate(points):
            if i != j:
                numerator = numerator * (at - other.x) % PRIME
                denominator = denominator * (share.x - other.x) % PRIME
        numerators.append(numerator)
        denominators.append(denominator)
    # others[i] = the product of every denominator but the i-th (prefix times suffix).
    count = len(points)
    prefix = [1] * (count + 1)
    for i, d in enumerate(denominators):
        prefix[i + 1] = prefix[i] * d % PRIME
    others, suffix = [0] * count, 1
    for i in range(count - 1, -1, -1):
        others[i] = prefix[i] * suffix % PRIME
        suffix = suffix * denominators[i] % PRIME
    total = sum(s.y * n * o for s, n, o in zip(points, numerators, others)) % PRIME
    return total * pow(prefix[count], -1, PRIME) % PRIME


def combine_shares(shares: Sequence[Share], threshold: int) -> bytes:
    """The secret that ``shares`` of a ``threshold``-of-n sharing give.

    The secret is interpolated from the first ``threshold`` shares; every further share
    must lie on the same polynomial, so a share that was altered or comes from another
    secret is detected when more than ``threshold`` shares are given.

    Raises
    ------
    AggregationError
        If fewer than ``threshold`` shares are given, two share the same point, the
        extra shares disagree, or the result is not a 32-byte secret.
    """
    if threshold < 1 or len(shares) < threshold:
        raise AggregationError(
            f"{len(shares)} shares cannot give a secret shared with threshold {threshold}"
        )
    if len({s.x for s in shares}) != len(shares):
        raise AggregationError("two shares are at the same point")
    basis = list(shares[:threshold])
    for extra in shares[threshold:]:
        if _interpolate_at(basis, extra.x) != extra.y:
            raise AggregationError(
                f"inconsistent shares: the share at {extra.x} is not on the polynomial of "
                "the others (altered, or of another secret)"
            )
    value = _interpolate_at(basis, 0)
    if value >> (8 * SECRET_BYTES):
        raise AggregationError("the shares give no 32-byte secret: they are inconsistent")
    return value.to_bytes(SECRET_BYTES, "big")


def expand_mask(
    seed: bytes, length: int, *, out: np.ndarray[Any, np.dtype[np.uint32]] | None = None
) -> np.ndarray[Any, np.dtype[np.uint32]]:
    """``length`` pseudo-random uint32 values from the 32-byte ``seed``: the keystream of
    AES-128 in counter mode keyed by the seed's first 16 bytes, from the counter block of
    its last 16, read little-endian; written into ``out`` (``length`` uint32) when given.

    Each seed is used for one mask only (fresh keys every round); the values are uniform
    on ``0..2**32-1`` to anyone who does not know the seed, to AES's 128-bit security.
    AES-128 rather than AES-256: the masks are most of a node's work in a secure round,
    and its keystream is twice as fast.

    Raises
    ------
    ConfigError
        If the seed is not 32 bytes, ``length`` is negative, or ``out`` is not ``length``
        contiguous uint32.
    """
    if len(seed) != SECRET_BYTES:
        raise ConfigError(f"a mask seed is {SECRET_BYTES} bytes, got {len(seed)}")
    if length < 0:
        raise ConfigError(f"a mask length must be >= 0, got {length}")
    if out is None:
        out = np.empty(length, dtype=np.uint32)
    elif out.shape != (length,) or out.dtype != np.uint32 or not out.flags.c_contiguous:
        raise ConfigError(f"a mask is written into {length} contiguous uint32")
    encryptor = Cipher(algorithms.AES(seed[:16]), modes.CTR(seed[16:])).encryptor()
    # The keystream is the encryption of zeros; counter mode writes as much as it reads.
    target = out.view(np.uint8).data
    done = 0
    while done < len(target):
        chunk = min(len(_ZEROS), len(target) - done)
        done += encryptor.update_into(_ZEROS[:chunk], target[done : done + chunk])
    if sys.byteorder != "little":
        out.byteswap(inplace=True)
    return out


#: Plaintext for :func:`expand_mask`'s keystream, read in chunks of this size.
_ZEROS = memoryview(bytes(1 << 20))


def quantize(
    values: np.ndarray[Any, Any],
    clipping_range: float,
    levels: int,
    *,
    out: np.ndarray[Any, np.dtype[np.uint32]] | None = None,
) -> np.ndarray[Any, np.dtype[np.uint32]]:
    """``values`` as elements of Z_(2**32): clipped to ``[-clipping_range, clipping_range]``
    and rounded to the nearest multiple of ``step = clipping_range / levels``
    (deterministic rounding, ties to even), as the signed integers ``-levels..levels`` in
    two's complement; written into ``out`` (of ``values``' shape) when given.

    Guarantee: for values within the clipping range, each element is off by at most
    ``step / 2``; the ring sum of ``m`` quantized vectors, with ``m * levels < 2**31``,
    dequantizes (:func:`dequantize`) to the exact sum of the rounded values, so it is off
    the true sum by at most ``m * step / 2`` per element. Values beyond the range are
    clipped first (their error is their distance to the range, plus the rounding).

    Raises
    ------
    ConfigError
        If ``clipping_range`` is not a positive finite number or ``levels`` is outside
        ``1..2**31-1``.
    """
    check_quantization(clipping_range, levels)
    scaled = np.array(values, dtype=np.float64)
    if out is None:
        out = np.empty(scaled.shape, dtype=np.uint32)
    quantize_in_place(scaled, clipping_range, levels, out)
    return out


def quantize_in_place(
    values: np.ndarray[Any, np.dtype[np.float64]],
    clipping_range: float,
    levels: int,
    out: np.ndarray[Any, np.dtype[np.uint32]],
) -> None:
    """:func:`quantize` of float64 ``values`` (settings already checked) into ``out``,
    using ``values`` as its scratch space: they are overwritten."""
    np.clip(values, -clipping_range, clipping_range, out=values)
    values *= levels / clipping_range
    np.rint(values, out=values)
    # |values| <= levels < 2**31: the rounded values fit int32, whose bits are the ring's.
    out.view(np.int32)[...] = values


def dequantize(
    total: np.ndarray[Any, np.dtype[np.uint32]], clipping_range: float, levels: int
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """The real sum that the ring sum ``total`` of quantized vectors stands for (its
    elements read as signed 32-bit integers, times the step).

    Raises
    ------
    ConfigError
        As :func:`quantize`.
    """
    check_quantization(clipping_range, levels)
    return total.view(np.int32).astype(np.float64) * (clipping_range / levels)


def check_quantization(clipping_range: float, levels: int) -> None:
    """Check quantization settings.

    Raises
    ------
    ConfigError
        If ``clipping_range`` is not a positive finite number or ``levels`` is outside
        ``1..2**31-1``.
    """
    if not (np.isfinite(clipping_range) and clipping_range > 0):
        raise ConfigError(f"clipping_range must be a positive number, got {clipping_range!r}")
    if not 1 <= levels < 1 << 31:
        raise ConfigError(f"quantization levels must be in 1..2**31-1, got {levels!r}")
