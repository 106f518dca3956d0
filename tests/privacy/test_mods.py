"""Client-side privacy mods on real messages: clipping, and local DP."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

import corolla.privacy
from corolla.client import ClientApp
from corolla.core import (
    ArrayRecord,
    ConfigError,
    ConfigRecord,
    Context,
    ErrorCode,
    Message,
    MetricRecord,
    RecordDict,
)
from corolla.privacy import (
    CLIPPING_NORM_KEY,
    UNCLIPPED_KEY,
    ClippedSum,
    LocalDP,
    clipping_mod,
    l2_norm,
)

GLOBAL = ArrayRecord({"w": np.full((2, 2), 10.0, np.float32), "b": np.zeros(5, np.float64)})


def train_message(config: dict[str, float | int], message_type: str = "train") -> Message:
    """A train message as a runtime delivers it."""
    content = RecordDict({"arrays": GLOBAL, "config": ConfigRecord(config)})
    return Message(content, dst_node_id=7, message_type=message_type, group_id="2").with_metadata(
        run_id=5, message_id="m-1"
    )


def context(node_id: int = 7) -> Context:
    return Context(run_id=5, node_id=node_id, node_config={"partition-id": 0}, run_config={})


def app_moving_by(step: float, mods: list) -> ClientApp:
    """A ClientApp adding ``step`` to every element (9 elements: norm 3 * step)."""
    app = ClientApp(mods=mods)

    @app.train()
    def train(message: Message, ctx: Context) -> Message:
        arrays = ArrayRecord(
            (n, (a + step).astype(a.dtype)) for n, a in message.content["arrays"].items()
        )
        metrics = MetricRecord({"num-examples": 3, "train-loss": 0.5})
        return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=message)

    @app.evaluate()
    def evaluate(message: Message, ctx: Context) -> RecordDict:
        return RecordDict({"metrics": MetricRecord({"num-examples": 3})})

    return app


def update_of(reply: Message) -> list[np.ndarray]:
    return [
        np.asarray(reply.content["arrays"][n], np.float64) - np.asarray(a, np.float64)
        for n, a in GLOBAL.items()
    ]


def test_public_names_are_exactly_the_intended_ones() -> None:
    dp_names = {
        "AdaptiveClipping",
        "CLIPPING_NORM_KEY",
        "CentralDP",
        "ClippedSum",
        "ClippingMod",
        "LocalDP",
        "PrivacyAccountant",
        "UNCLIPPED_KEY",
        "adaptive_clipping_norm",
        "add_gaussian_noise",
        "clip_update",
        "clipping_mod",
        "l2_norm",
        "noise_share_stddev",
        "update_noise_multiplier",
    }
    assert dp_names <= set(corolla.privacy.__all__)
    assert all(hasattr(corolla.privacy, name) for name in corolla.privacy.__all__)


def test_the_clipping_mod_clips_the_update_to_the_norm_the_server_sent() -> None:
    app = app_moving_by(1.0, [clipping_mod])

    reply = app(train_message({CLIPPING_NORM_KEY: 1.5, "server-round": 2}), context())

    assert l2_norm(update_of(reply)) == pytest.approx(1.5, rel=1e-6)
    assert reply.content["metrics"][UNCLIPPED_KEY] == 0
    assert reply.content["metrics"]["train-loss"] == 0.5
    assert reply.content["arrays"]["w"].dtype == np.float32
    assert reply.metadata.reply_to_message_id == "m-1"


def test_the_clipping_mod_leaves_an_update_within_the_norm_and_says_so() -> None:
    app = app_moving_by(0.25, [clipping_mod])

    reply = app(train_message({CLIPPING_NORM_KEY: 1.0}), context())

    assert l2_norm(update_of(reply)) == pytest.approx(0.75)
    assert reply.content["metrics"][UNCLIPPED_KEY] == 1


def test_a_reply_clipped_on_the_node_is_accepted_by_the_server_s_check() -> None:
    # float32 arrays near 10 round the clipped update: the server allows that rounding
    reply = app_moving_by(1.0, [clipping_mod])(train_message({CLIPPING_NORM_KEY: 0.1}), context())
    aggregator = ClippedSum(GLOBAL, 0.1, clipping="client")

    aggregator.add(reply.content, 7)

    assert aggregator.count == 1 and aggregator.unclipped == 0
    assert l2_norm(aggregator.sums()) <= 0.1


def test_the_clipping_mod_lets_other_messages_pass() -> None:
    app = app_moving_by(1.0, [clipping_mod])
    message = Message(
        RecordDict({"arrays": GLOBAL}), dst_node_id=7, message_type="evaluate", group_id="2"
    ).with_metadata(run_id=5, message_id="m-2")

    reply = app(message, context())

    assert reply.content["metrics"]["num-examples"] == 3


def test_the_clipping_mod_needs_the_norm_from_the_server() -> None:
    app = app_moving_by(1.0, [clipping_mod])

    with pytest.raises(ConfigError, match=re.escape("CentralDP(..., clipping='client')")):
        app(train_message({"server-round": 1}), context())


def test_the_clipping_mod_passes_error_replies_on() -> None:
    from corolla.client import run_client_app

    app = ClientApp(mods=[clipping_mod])

    @app.train()
    def train(message: Message, ctx: Context) -> Message:
        raise RuntimeError("no data")

    reply = run_client_app(app, train_message({CLIPPING_NORM_KEY: 1.0}), context())

    assert reply.has_error() and reply.error.code == ErrorCode.CLIENT_APP_RAISED


def test_local_dp_clips_and_noises_every_update_on_the_node() -> None:
    big = ArrayRecord({"w": np.zeros(40_000)})
    message = Message(
        RecordDict({"arrays": big, "config": ConfigRecord({"server-round": 1})}),
        dst_node_id=7,
        message_type="train",
        group_id="1",
    ).with_metadata(run_id=5, message_id="m-1")
    ldp = LocalDP(clipping_norm=0.5, noise_multiplier=2.0, seed=1)
    app = ClientApp(mods=[ldp])

    @app.train()
    def train(message: Message, ctx: Context) -> Message:
        arrays = ArrayRecord({"w": message.content["arrays"]["w"] + 100.0})
        return Message(RecordDict({"arrays": arrays}), reply_to=message)

    reply = app(message, context())

    noised = np.asarray(reply.content["arrays"]["w"])
    # The clipped update is 0.5 / sqrt(40 000) = 0.0025 per element; the noise is 1.0
    assert np.mean(noised) == pytest.approx(0.0025, abs=5 / math.sqrt(40_000))
    assert np.std(noised) == pytest.approx(2.0 * 0.5, rel=0.02)


def test_local_dp_noise_differs_between_nodes_and_repeats_with_a_seed() -> None:
    ldp = LocalDP(clipping_norm=1.0, noise_multiplier=1.0, seed=3)
    app = app_moving_by(0.0, [ldp])
    message = train_message({"server-round": 4})

    first, again = app(message, context(7)), app(message, context(7))
    other = app(message, context(8))

    np.testing.assert_array_equal(first.content["arrays"]["b"], again.content["arrays"]["b"])
    assert not np.array_equal(first.content["arrays"]["b"], other.content["arrays"]["b"])
    unseeded = app_moving_by(0.0, [LocalDP(clipping_norm=1.0, noise_multiplier=1.0)])
    assert not np.array_equal(
        unseeded(message, context()).content["arrays"]["b"],
        unseeded(message, context()).content["arrays"]["b"],
    )


def test_local_dp_s_epsilon_is_that_of_a_gaussian_of_half_the_multiplier() -> None:
    import dp_accounting

    by_noise = LocalDP(clipping_norm=1.0, noise_multiplier=8.0, delta=1e-5)
    by_epsilon = LocalDP(clipping_norm=1.0, epsilon=by_noise.epsilon, delta=1e-5)

    assert by_noise.epsilon == pytest.approx(dp_accounting.get_epsilon_gaussian(4.0, 1e-5))
    assert by_epsilon.noise_multiplier == pytest.approx(8.0, rel=1e-6)
    with pytest.raises(ConfigError, match="exactly one of noise_multiplier and epsilon"):
        LocalDP(clipping_norm=1.0)
    with pytest.raises(ConfigError, match="clipping norm must be a positive finite number"):
        LocalDP(clipping_norm=-1.0, epsilon=1.0)
