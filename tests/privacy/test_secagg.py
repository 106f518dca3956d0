"""SecAgg+ in simulation: the secure aggregate is FedAvg's within the quantization bound,
whoever drops out at whichever stage, and a round below the threshold aborts cleanly."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import corolla.strategy as cs
from corolla.client import CallNext, ClientApp
from corolla.core import (
    ArrayRecord,
    ConfigError,
    ConfigRecord,
    Context,
    Event,
    ExecutionError,
    Message,
    MessageError,
    MetricRecord,
    RecordDict,
)
from corolla.privacy import SecAggPlus, secaggplus_mod
from corolla.privacy._secagg_encoding import levels_for
from corolla.server import RunResult
from corolla.simulation import InlineExecutor, ProcessExecutor, SimulationGrid

INITIAL = ArrayRecord(
    {"w": np.linspace(-1, 1, 600, dtype=np.float32).reshape(20, 30), "b": np.ones(5)}
)
NUM_NODES = 20
CLIPPING = 0.5
MAX_WEIGHT = 64
STAGES = ["setup", "share-keys", "masked-input", "unmask"]


def _train(message: Message, context: Context) -> Message:
    """A local update of deltas within the clipping range, weighted 1..20 by node."""
    node = context.node_id
    server_round = int(message.content["config"]["server-round"])
    rng = np.random.default_rng([node, server_round])
    arrays = ArrayRecord(
        (k, (v + rng.uniform(-0.4, 0.4, v.shape)).astype(v.dtype))
        for k, v in message.content["arrays"].items()
    )
    metrics = MetricRecord({"num-examples": node, "loss": 1.0 + node / 10, "extra": 3.0})
    return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=message)


def _evaluate(message: Message, context: Context) -> RecordDict:
    return RecordDict({"metrics": MetricRecord({"num-examples": 1, "loss": 0.5})})


def _stage(message: Message) -> str:
    record = message.content.get("secaggplus") if message.has_content() else None
    return str(record["stage"]) if record is not None else "masked-input"


def _round(message: Message) -> int:
    record = message.content.get("secaggplus")
    return int(record["round"] if record is not None else message.content["config"]["server-round"])


def _dropout(message: Message, context: Context, call_next: CallNext) -> Message:
    """Nodes listed in the run config fail at the stage it names (in every round, or the
    one it names), as a crashing app does."""
    dropping = str(context.run_config.get("drop-nodes", "")).split(",")
    stage = context.run_config.get("drop-stage")
    only = int(context.run_config.get("drop-round", 0))
    if (
        message.metadata.message_type == "train"
        and str(context.node_id) in dropping
        and _stage(message) == stage
        and only in (0, _round(message))
    ):
        raise RuntimeError(f"node {context.node_id} fails at {stage}")
    return call_next(message, context)


def _app(*mods: Any) -> ClientApp:
    app = ClientApp(mods=[_dropout, *mods])
    app.train()(_train)
    app.evaluate()(_evaluate)
    return app


secure_app = _app(secaggplus_mod)
plain_app = _app()


def _secure(strategy: cs.Strategy, **options: Any) -> SecAggPlus:
    settings: dict[str, Any] = {
        "clipping_range": CLIPPING,
        "max_weight": MAX_WEIGHT,
        "metrics": ["loss"],
        "seed": 1,
    }
    return SecAggPlus(strategy, **(settings | options))


def _run(
    strategy: cs.Strategy,
    app: ClientApp,
    *,
    rounds: int = 1,
    drop: tuple[str, list[int]] | None = None,
    drop_round: int = 0,
    events: list[Event] | None = None,
    executor: Any = None,
) -> RunResult:
    config = {}
    if drop is not None:
        config = {
            "drop-stage": drop[0],
            "drop-nodes": ",".join(map(str, drop[1])),
            "drop-round": drop_round,
        }
    executor = executor or InlineExecutor(app, run_config=config)
    with executor:
        sink = events.append if events is not None else None
        grid = SimulationGrid(executor, NUM_NODES, events=sink)
        return strategy.start(grid, INITIAL, num_rounds=rounds)


def _bound(weights: list[int], clipping_range: float = CLIPPING) -> float:
    """The documented worst-case error of the secure average per element (plus float32
    rounding of the result)."""
    step = clipping_range / levels_for(NUM_NODES)
    return NUM_NODES * MAX_WEIGHT * step / (2 * sum(weights)) + 1e-6


def _assert_close(secure: RunResult, plain: RunResult, weights: list[int], rounds: int = 1) -> None:
    """Each round's error adds to the last's: the next round starts from its result."""
    assert secure.arrays is not None and plain.arrays is not None
    bound = rounds * _bound(weights)
    for name in INITIAL:
        assert secure.arrays[name].dtype == INITIAL[name].dtype
        error = np.max(np.abs(secure.arrays[name] - plain.arrays[name].astype(np.float64)))
        assert error <= bound, (name, error, bound)
    assert not np.allclose(secure.arrays["w"], INITIAL["w"])


def _dropped(fraction: float) -> list[int]:
    return list(range(2, 2 + round(fraction * NUM_NODES)))


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("fraction", [0.1, 0.3])
def test_the_secure_average_is_fedavgs_whoever_drops_out_at_any_stage(
    stage: str, fraction: float
) -> None:
    # Arrange: a tenth or 30% of the nodes fail at the stage; the complete graph (k = n - 1)
    # with t = 10 survives 30%. Nodes dropped before the unmask stage are not in the sum.
    dropped = _dropped(fraction)
    counted = [n for n in range(1, NUM_NODES + 1) if stage == "unmask" or n not in dropped]
    plain_drop = None if stage == "unmask" else ("masked-input", dropped)

    # Act
    secure = _run(
        _secure(cs.FedAvg(seed=0), neighbours=NUM_NODES), secure_app, drop=(stage, dropped)
    )
    plain = _run(cs.FedAvg(seed=0), plain_app, drop=plain_drop)

    # Assert
    _assert_close(secure, plain, counted)
    summary = secure.history.rounds[-1]
    assert summary.train_replies == len(counted) if stage != "unmask" else NUM_NODES
    assert summary.train["num-examples"] == sum(counted)
    loss_error = abs(summary.train["loss"] - plain.history.rounds[-1].train["loss"])
    assert loss_error <= _bound(counted, clipping_range=1e4)  # the default metrics_range
    assert "extra" not in summary.train  # metrics not named stay on the nodes


def test_without_dropouts_the_log_degree_graph_gives_fedavgs_average_over_rounds() -> None:
    secure = _run(_secure(cs.FedAvg(seed=0)), secure_app, rounds=3)
    plain = _run(cs.FedAvg(seed=0), plain_app, rounds=3)

    _assert_close(secure, plain, list(range(1, NUM_NODES + 1)), rounds=3)
    assert [r.train_failures for r in secure.history.rounds] == [0, 0, 0]


def test_the_default_graph_survives_a_tenth_of_the_nodes_dropping_at_masked_input() -> None:
    dropped = _dropped(0.1)
    secure = _run(_secure(cs.FedAvg(seed=0)), secure_app, drop=("masked-input", dropped))
    plain = _run(cs.FedAvg(seed=0), plain_app, drop=("masked-input", dropped))

    _assert_close(secure, plain, [n for n in range(1, NUM_NODES + 1) if n not in dropped])


def test_fedadam_and_fedprox_work_unchanged_under_secure_aggregation() -> None:
    for factory in (lambda: cs.FedAdam(seed=0), lambda: cs.FedProx(proximal_mu=0.1, seed=0)):
        secure = _run(_secure(factory()), secure_app, rounds=2)
        plain = _run(factory(), plain_app, rounds=2)

        assert secure.arrays is not None and plain.arrays is not None
        for name in INITIAL:
            np.testing.assert_allclose(secure.arrays[name], plain.arrays[name], atol=1e-5)


def test_a_round_below_the_threshold_at_unmask_aborts_keeping_the_arrays() -> None:
    # Arrange: 12 of 20 nodes fail at the unmask stage; every node's secrets then have
    # fewer than t = 10 shares from surviving neighbours.
    events: list[Event] = []

    # Act
    result = _run(
        _secure(cs.FedAvg(seed=0), neighbours=NUM_NODES),
        secure_app,
        rounds=2,
        drop=("unmask", list(range(1, 13))),
        events=events,
    )

    # Assert: both rounds aborted, the arrays are the initial ones, and events say why
    assert result.arrays is not None and result.history is not None
    for name in INITIAL:
        np.testing.assert_array_equal(result.arrays[name], INITIAL[name])
    assert [len(r.train) for r in result.history.rounds] == [0, 0]
    aborts = [e for e in events if e.kind == "secagg.abort"]
    assert [e.round for e in aborts] == [1, 2]
    assert aborts[0].data["phase"] == "secagg.unmask"
    assert "10 needed: too many nodes dropped out" in aborts[0].data["reason"]
    failures = [e for e in events if e.kind == "reply.error" and e.round == 1]
    assert {e.node_id for e in failures} == set(range(1, 13))


def test_a_round_that_aborts_before_masking_tells_its_nodes_and_the_next_goes_on() -> None:
    # Arrange: in round 1 only, 12 of 20 nodes fail at the share-keys stage
    events: list[Event] = []

    # Act
    result = _run(
        _secure(cs.FedAvg(seed=0), neighbours=NUM_NODES),
        secure_app,
        rounds=2,
        drop=("share-keys", list(range(1, 13))),
        drop_round=1,
        events=events,
    )

    # Assert: round 1 counts every node's training as failed, saying why; round 2 trains
    assert result.history is not None
    first, second = result.history.rounds
    assert (first.train_replies, first.train_failures) == (0, NUM_NODES)
    assert (second.train_replies, second.train_failures) == (NUM_NODES, 0)
    (abort,) = [e for e in events if e.kind == "secagg.abort"]
    assert abort.round == 1 and abort.data["phase"] == "secagg.share-keys"
    told = [e for e in events if e.kind == "reply.error" and e.data["phase"] == "train"]
    assert len(told) == NUM_NODES
    assert all("the server aborted the round" in e.data["reason"] for e in told)


def test_a_run_whose_every_round_aborts_ends_in_an_error_and_events_hint_at_the_mod() -> None:
    events: list[Event] = []

    with pytest.raises(ExecutionError, match="every training reply of the run failed"):
        _run(_secure(cs.FedAvg(seed=0)), plain_app, events=events)

    (abort,) = [e for e in events if e.kind == "secagg.abort"]
    assert "secaggplus_mod" in abort.data["reason"]


def test_worker_processes_give_the_inline_result() -> None:
    inline = _run(_secure(cs.FedAvg(seed=0)), secure_app)
    workers = _run(
        _secure(cs.FedAvg(seed=0)), secure_app, executor=ProcessExecutor(secure_app, num_workers=2)
    )

    assert inline.arrays is not None and workers.arrays is not None
    for name in INITIAL:
        np.testing.assert_array_equal(workers.arrays[name], inline.arrays[name])


#: The replies of node 1 as the server receives them, kept by :func:`_capture`.
CAPTURED: list[Message] = []


def _capture(message: Message, context: Context, call_next: CallNext) -> Message:
    reply = call_next(message, context)
    if context.node_id == 1:
        CAPTURED.append(reply)
    return reply


def _chi_square_of_bytes(vector: np.ndarray[Any, Any]) -> float:
    counts = np.bincount(vector.view(np.uint8), minlength=256)
    expected = counts.sum() / 256
    return float(((counts - expected) ** 2 / expected).sum())


def test_one_nodes_masked_vector_is_indistinguishable_from_uniform() -> None:
    # Arrange: keep what node 1 sends in the masked-input stage
    CAPTURED.clear()
    app = _app(_capture, secaggplus_mod)

    # Act
    _run(_secure(cs.FedAvg(seed=0)), app)

    # Assert: a chi-square test of the vector's 2,420 bytes over 256 bins (255 degrees of
    # freedom): a uniform vector exceeds 420 with probability 3e-10. Unmasked, the small
    # signed integers the encoding makes are nearly all bytes 0x00 and 0xff.
    (masked,) = [
        r.content["secaggplus-masked"]["masked"]
        for r in CAPTURED
        if r.has_content() and "secaggplus-masked" in r.content
    ]
    assert masked.dtype == np.uint32
    assert _chi_square_of_bytes(masked) < 420
    unmasked = _encode_as_node_1()
    assert _chi_square_of_bytes(unmasked) > 10_000


def _encode_as_node_1() -> np.ndarray[Any, Any]:
    from corolla.privacy._secagg_encoding import Encoding
    from corolla.strategy import array_spec

    encoding = Encoding(
        clipping_range=CLIPPING,
        metrics_range=1e4,
        levels=levels_for(NUM_NODES),
        max_weight=MAX_WEIGHT,
        metrics=("loss",),
        spec=tuple(array_spec(INITIAL)),
    )
    config = ConfigRecord({"server-round": 1})
    request = Message(
        RecordDict({"arrays": INITIAL, "config": config}), dst_node_id=1, message_type="train"
    )
    reply = _train(request, _context(1))
    return encoding.encode(reply.content, INITIAL)


def test_strategies_whose_aggregate_is_no_weighted_sum_are_refused() -> None:
    with pytest.raises(ConfigError, match="no weighted sum"):
        _run(_secure(cs.FedMedian(seed=0)), secure_app)


def test_settings_out_of_range_are_refused() -> None:
    with pytest.raises(ConfigError, match="threshold_fraction"):
        SecAggPlus(cs.FedAvg(), threshold_fraction=0.3)
    with pytest.raises(ConfigError, match="clipping_range"):
        SecAggPlus(cs.FedAvg(), clipping_range=0.0)
    with pytest.raises(ConfigError, match="max_weight"):
        SecAggPlus(cs.FedAvg(), max_weight=0)
    with pytest.raises(ConfigError, match="overflows"):
        _run(_secure(cs.FedAvg(seed=0), max_weight=2**30), secure_app)


def _context(node_id: int = 1) -> Context:
    return Context(run_id=1, node_id=node_id, node_config={}, run_config={})


def _stage_message(entries: dict[str, Any]) -> Message:
    record = ConfigRecord({"round": 1, **entries})
    return Message(RecordDict({"secaggplus": record}), dst_node_id=1, message_type="train")


def _no_next(message: Message, context: Context) -> Message:
    raise AssertionError("the train handler must not run")


def test_a_node_refuses_an_unsafe_threshold() -> None:
    message = _stage_message({"stage": "setup", "neighbours": [2, 3, 4, 5], "threshold": 2})

    with pytest.raises(MessageError, match="unsafe"):
        secaggplus_mod(message, _context(), _no_next)


def test_a_node_refuses_stages_out_of_order() -> None:
    message = _stage_message({"stage": "unmask", "dropped": [2], "survivors": [3]})

    with pytest.raises(MessageError, match="out of order"):
        secaggplus_mod(message, _context(), _no_next)


def test_a_node_refuses_to_reveal_both_secrets_of_one_node() -> None:
    # Arrange: node 1 has sent its masked input in a round with neighbours 2 and 3
    context = _context()
    state = {
        "stage": "masked-input",
        "run": 0,
        "round": 1,
        "senders": [2, 3],
        "shares": [b"", b""],
    }
    context.state = RecordDict({"secaggplus": ConfigRecord(state)})
    message = _stage_message({"stage": "unmask", "dropped": [2], "survivors": [2, 3]})

    # Act / Assert: node 2 is named both dropped and surviving
    with pytest.raises(MessageError, match="distinct"):
        secaggplus_mod(message, context, _no_next)
