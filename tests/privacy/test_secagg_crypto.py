"""The primitives of SecAgg+: key agreement, authenticated encryption, Shamir sharing, the
mask PRG, quantization, the communication graph and the vector encoding."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from corolla.core import (
    AggregationError,
    ArrayRecord,
    ConfigError,
    MessageError,
    MetricRecord,
    RecordDict,
)
from corolla.privacy._secagg_crypto import (
    PRIME,
    Share,
    agree,
    combine_shares,
    decrypt,
    dequantize,
    encrypt,
    expand_mask,
    generate_key_pair,
    public_key,
    quantize,
    split_secret,
)
from corolla.privacy._secagg_encoding import Encoding, levels_for
from corolla.privacy._secagg_graph import (
    default_neighbours,
    harary_graph,
    reconstruction_threshold,
)
from corolla.privacy._secagg_sum import MaskedSum
from corolla.strategy import array_spec

secrets_32 = st.binary(min_size=32, max_size=32)


def test_both_sides_of_an_agreement_derive_the_same_key_for_the_same_purpose_only() -> None:
    a, b = generate_key_pair(), generate_key_pair()

    key = agree(a.private, b.public, b"purpose")

    assert key == agree(b.private, a.public, b"purpose")
    assert len(key) == 32
    assert key != agree(a.private, b.public, b"another purpose")
    assert public_key(a.private) == a.public


def test_agreement_with_a_low_order_point_is_refused() -> None:
    with pytest.raises(MessageError, match="refused"):
        agree(generate_key_pair().private, bytes(32), b"purpose")


def test_encryption_round_trips_and_rejects_tampering_and_wrong_associated_data() -> None:
    key = agree(generate_key_pair().private, generate_key_pair().public, b"k")
    ciphertext = encrypt(key, b"shares", b"1>2")

    assert decrypt(key, ciphertext, b"1>2") == b"shares"
    tampered = ciphertext[:-1] + bytes([ciphertext[-1] ^ 1])
    with pytest.raises(MessageError, match="authenticate"):
        decrypt(key, tampered, b"1>2")
    with pytest.raises(MessageError, match="authenticate"):
        decrypt(key, ciphertext, b"2>1")
    with pytest.raises(MessageError, match="authenticate"):
        decrypt(bytes(32), ciphertext, b"1>2")


@settings(max_examples=25, deadline=None)
@given(secret=secrets_32, n=st.integers(1, 8), data=st.data())
def test_any_threshold_of_shares_gives_the_secret_and_fewer_do_not(
    secret: bytes, n: int, data: st.DataObject
) -> None:
    # Arrange
    threshold = data.draw(st.integers(1, n))
    xs = data.draw(st.lists(st.integers(1, 2**63), min_size=n, max_size=n, unique=True))
    shares = split_secret(secret, threshold, xs)

    # Act / Assert: any threshold-subset, in any order, gives the secret back
    subset = data.draw(st.permutations(shares))[:threshold]
    assert combine_shares(subset, threshold) == secret
    with pytest.raises(AggregationError, match="cannot give"):
        combine_shares(subset[:-1], threshold)
    if threshold > 1:
        # t - 1 shares, interpolated as if they were enough, give no secret or another
        try:
            guess: bytes | None = combine_shares(subset[:-1], threshold - 1)
        except AggregationError:
            guess = None
        assert guess != secret


def test_an_altered_share_is_detected_when_one_more_share_is_given() -> None:
    shares = split_secret(bytes(range(32)), 3, [5, 6, 7, 8])
    altered = [shares[0], Share(shares[1].x, (shares[1].y + 1) % PRIME), *shares[2:]]

    with pytest.raises(AggregationError, match="inconsistent"):
        combine_shares(altered, 3)


def test_splitting_refuses_bad_settings() -> None:
    with pytest.raises(ConfigError, match="32 bytes"):
        split_secret(b"short", 1, [1])
    with pytest.raises(ConfigError, match="threshold"):
        split_secret(bytes(32), 3, [1, 2])
    with pytest.raises(ConfigError, match="distinct"):
        split_secret(bytes(32), 1, [1, 1])
    with pytest.raises(ConfigError, match="distinct"):
        split_secret(bytes(32), 1, [0, 1])


def test_a_share_round_trips_through_bytes_and_refuses_malformed_ones() -> None:
    share = split_secret(bytes(32), 2, [3, 4])[0]

    assert Share.from_bytes(3, share.to_bytes()) == share
    with pytest.raises(MessageError):
        Share.from_bytes(3, b"\xff" * 66)


@settings(max_examples=20, deadline=None)
@given(seed=secrets_32, other=secrets_32, length=st.integers(0, 3000))
def test_the_prg_is_deterministic_seed_separated_and_prefix_consistent(
    seed: bytes, other: bytes, length: int
) -> None:
    mask = expand_mask(seed, length)

    assert mask.dtype == np.uint32 and mask.shape == (length,)
    np.testing.assert_array_equal(mask, expand_mask(seed, length))
    np.testing.assert_array_equal(expand_mask(seed, length + 7)[:length], mask)
    if other != seed and length >= 4:
        assert not np.array_equal(mask, expand_mask(other, length))


def test_the_prg_output_is_uniform_by_a_chi_square_test() -> None:
    mask = expand_mask(bytes(32), 1 << 16)

    counts = np.bincount(mask >> 24, minlength=256)
    chi2 = float(((counts - 256) ** 2 / 256).sum())

    assert chi2 < 420  # 255 degrees of freedom: exceeded with probability 3e-10


finite = st.floats(-10, 10, allow_nan=False)


@settings(max_examples=50, deadline=None)
@given(
    vectors=st.lists(hnp.arrays(np.float64, 17, elements=finite), min_size=1, max_size=30),
    clipping_range=st.floats(0.01, 5),
)
def test_the_dequantized_ring_sum_is_within_the_bound_of_the_clipped_sum(
    vectors: list[np.ndarray], clipping_range: float
) -> None:
    # Arrange
    levels = levels_for(len(vectors))
    step = clipping_range / levels

    # Act: sum in the ring, with wraparound, as the server does
    total = np.zeros(17, dtype=np.uint32)
    for v in vectors:
        total += quantize(v, clipping_range, levels)
    result = dequantize(total, clipping_range, levels)

    # Assert: off the sum of the clipped values by at most m * step / 2
    expected = sum(np.clip(v, -clipping_range, clipping_range) for v in vectors)
    bound = len(vectors) * step / 2
    assert np.max(np.abs(result - expected)) <= bound * (1 + 1e-9) + 1e-12


def test_quantization_refuses_bad_settings() -> None:
    with pytest.raises(ConfigError, match="clipping_range"):
        quantize(np.zeros(2), math.inf, 10)
    with pytest.raises(ConfigError, match="levels"):
        quantize(np.zeros(2), 1.0, 2**31)


@pytest.mark.parametrize("n", [2, 3, 10, 20, 100, 300, 1000])
def test_the_harary_graph_is_k_regular_and_symmetric(n: int) -> None:
    k = default_neighbours(n)
    graph = harary_graph(list(range(1, n + 1)), k, np.random.default_rng(0))

    assert all(len(neighbours) == k and u not in neighbours for u, neighbours in graph.items())
    assert all(u in graph[v] for u, neighbours in graph.items() for v in neighbours)
    assert k == n - 1 or k <= 2 * math.ceil(1.5 * math.log2(n))


def test_the_threshold_is_a_strict_majority_of_the_neighbours() -> None:
    assert [reconstruction_threshold(k, 0.5) for k in (1, 2, 3, 14, 20)] == [1, 2, 2, 8, 11]
    assert reconstruction_threshold(10, 0.99) == 10
    with pytest.raises(ConfigError, match="threshold_fraction"):
        reconstruction_threshold(10, 0.4)


def test_an_odd_degree_below_n_minus_one_is_refused() -> None:
    with pytest.raises(ConfigError, match="even"):
        harary_graph(list(range(10)), 3, np.random.default_rng(0))


def _encoding(metrics: tuple[str, ...] = ("loss",)) -> Encoding:
    spec = tuple(array_spec(ArrayRecord({"w": np.zeros((2, 3), np.float32)})))
    return Encoding(
        clipping_range=1.0,
        metrics_range=100.0,
        levels=levels_for(4),
        max_weight=10,
        metrics=metrics,
        spec=spec,
    )


def _reply(w: np.ndarray, weight: float, **metrics: float) -> RecordDict:
    return RecordDict(
        {
            "arrays": ArrayRecord({"w": w}),
            "metrics": MetricRecord({"num-examples": weight, **metrics}),
        }
    )


def test_encoded_replies_sum_and_decode_to_their_weighted_average() -> None:
    # Arrange
    encoding = _encoding()
    base = ArrayRecord({"w": np.full((2, 3), 0.5, np.float32)})
    updates = [np.full((2, 3), v, np.float32) for v in (0.25, 1.0, 0.75)]
    weights = [2, 4, 30]  # the last is capped at max_weight 10
    replies = [
        _reply(updates[0], weights[0], loss=1.0),
        _reply(updates[1], weights[1], loss=3.0),
        _reply(updates[2], weights[2]),  # reports no loss
    ]

    # Act
    total = sum((encoding.encode(r, base) for r in replies), np.zeros(encoding.length, np.uint32))
    content = encoding.decode(total.astype(np.uint32), base)

    # Assert
    expected = (2 * 0.25 + 4 * 1.0 + 10 * 0.75) / 16
    np.testing.assert_allclose(content["arrays"]["w"], expected, atol=1e-6)
    assert content["metrics"]["num-examples"] == 16
    assert content["metrics"]["loss"] == pytest.approx((2 * 1.0 + 4 * 3.0) / 6, abs=1e-5)


def test_encoding_refuses_replies_it_cannot_encode() -> None:
    encoding = _encoding()
    base = ArrayRecord({"w": np.zeros((2, 3), np.float32)})

    with pytest.raises(MessageError, match="do not match"):
        encoding.encode(_reply(np.zeros((3, 2), np.float32), 1), base)
    with pytest.raises(MessageError, match="NaN"):
        encoding.encode(_reply(np.full((2, 3), np.nan, np.float32), 1), base)
    with pytest.raises(MessageError, match="negative"):
        encoding.encode(_reply(np.zeros((2, 3), np.float32), -1), base)
    with pytest.raises(ConfigError, match="distinct"):
        _encoding(("loss", "loss"))


def test_the_masked_sum_is_a_monoid_and_rejects_strangers_and_repeats() -> None:
    # Arrange
    rng = np.random.default_rng(0)
    vectors = {n: rng.integers(0, 2**32, 5, dtype=np.uint64).astype(np.uint32) for n in (1, 2, 3)}
    contents = {
        n: RecordDict({"secaggplus-masked": ArrayRecord({"masked": v})}) for n, v in vectors.items()
    }
    whole = MaskedSum(5, frozenset(vectors))
    left, right = whole.empty(), whole.empty()

    # Act
    for n in (1, 2, 3):
        whole.add(contents[n], n)
    left.add(contents[1], 1)
    right.add(contents[3], 3)
    right.add(contents[2], 2)
    left.merge(right)

    # Assert
    assert whole.total is not None and left.total is not None
    np.testing.assert_array_equal(left.total, whole.total)
    assert left.count == whole.count == 3
    expected = sum(v.astype(np.uint64) for v in vectors.values()) % (1 << 32)
    np.testing.assert_array_equal(whole.total, expected.astype(np.uint32))
    with pytest.raises(AggregationError, match="not asked"):
        whole.add(contents[1], 1)
    with pytest.raises(AggregationError, match="not asked"):
        MaskedSum(5, frozenset({9})).add(contents[1], 1)
    with pytest.raises(AggregationError, match="uint32"):
        whole.empty().add(
            RecordDict({"secaggplus-masked": ArrayRecord({"masked": np.zeros(4)})}), 1
        )
    with pytest.raises(AggregationError, match="twice"):
        left.merge(right)


def test_all_pairs_of_masks_cancel_in_the_sum() -> None:
    # The invariant the protocol rests on: u adds the mask shared with a larger id, and
    # subtracts the one shared with a smaller id.
    keys = {n: generate_key_pair() for n in range(1, 5)}
    total = np.zeros(8, np.uint32)
    for u, v in itertools.permutations(keys, 2):
        seed = agree(keys[u].private, keys[v].public, b"%d-%d" % (min(u, v), max(u, v)))
        (np.add if u < v else np.subtract)(total, expand_mask(seed, 8), out=total)

    np.testing.assert_array_equal(total, 0)
