"""SecAgg+ (Bell et al., 2020): the server learns the sum of the nodes' updates, never one.

:class:`SecAggPlus` wraps a strategy whose training aggregate is a weighted average
(FedAvg, FedAvgM, FedProx, FedAdagrad, FedAdam, FedYogi). Each round's training phase runs
four stages over the grid, the node's side answered by :func:`secaggplus_mod`:

1. setup: each sampled node learns its neighbours in a random ``k``-regular graph and the
   threshold ``t``, and sends two fresh X25519 public keys;
2. share-keys: each node receives its neighbours' keys and sends each, encrypted for it,
   a Shamir share of its self-mask seed and of its masking private key;
3. masked input: each node trains, encodes its update, weight and metrics as a vector of
   Z_(2**32) (:mod:`._secagg_encoding`) and adds its self mask and, with each neighbour,
   the pairwise mask both derive from their X25519 agreement (one adds, the other
   subtracts); the replies fold into a :class:`MaskedSum` as they arrive;
4. unmask: each surviving node sends the shares the server needs: masking-key shares of
   its neighbours that dropped (to cancel their pairwise masks, left unmatched) and
   self-mask seed shares of those that survived (never both for one node).

The server then removes the masks, decodes the sum into one reply standing for the
survivors (their weighted average, weighted mean metrics and total weight) and hands it to
the wrapped strategy's own aggregator and ``aggregate_train``, so server optimizers,
minimums and histories work unchanged.

With differential privacy: SecAggPlus wraps :class:`~corolla.privacy.CentralDP` with
client-side clipping (``SecAggPlus(CentralDP(FedAvg(), clipping="client", ...))``). Each
node then clips its update to C and adds Gaussian noise of standard deviation
``z C / sqrt(q)``, where ``q`` (the noise quorum) is ``noise_quorum`` of the nodes sampled:
the sum of any ``q`` or more of them carries at least the noise ``z C`` that CentralDP's
accountant counts, and the server, which only sees that sum, never sees a value with less.
A round with fewer than ``q`` nodes left at any stage aborts before unmasking anything.

Dropouts: a node that sends an error, a malformed reply or nothing in time at any stage
leaves the round. Between stages the server drops nodes left with fewer than ``t``
surviving neighbours (their secrets could not be recovered), before any of their masks
enter a vector. If a secret that the unmasking needs has fewer than ``t`` shares, or
fewer than 2 nodes are left, the round aborts: it keeps the global arrays and emits a
``secagg.abort`` event saying why. A round aborted before the masked input tells its
nodes, which forget its secrets and answer with an error saying why: its training replies
count as failed, as those of any round whose replies all failed (a run whose every round
failed ends in :class:`~corolla.core.ExecutionError`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..core import (
    AggregationError,
    ArrayRecord,
    ConfigError,
    ConfigRecord,
    ErrorCode,
    Event,
    Message,
    MessageError,
    MetricRecord,
    RecordDict,
)
from ..server import Grid, Reduction
from ..strategy import RoundPlan, Strategy, WeightedAverage, WrappedStrategy, array_spec
from ._aggregate import ClippedSum, NoisedSum
from ._central import CentralDP
from ._clipping import noise_share_stddev
from ._secagg_crypto import (
    SECRET_BYTES,
    Share,
    agree,
    check_quantization,
    combine_shares,
    expand_mask,
    private_key,
    public_key,
)
from ._secagg_encoding import DPShare, Encoding, check_arrays, levels_for
from ._secagg_graph import default_neighbours, harary_graph, reconstruction_threshold
from ._secagg_sum import MaskedSum
from ._secagg_wire import SECAGG_KEY, Stage, mask_info, require

__all__ = ["SecAggPlus"]

_RING = 1 << 32


class _Abort(Exception):
    """The round cannot be securely aggregated; the reason is the message."""

    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(reason)
        self.stage = stage


@dataclasses.dataclass
class _Round:
    """What the server keeps of a round between its configure and aggregate hooks."""

    grid: Grid
    server_round: int
    graph: dict[int, list[int]]
    threshold: int
    masked: frozenset[int]
    masking_keys: dict[int, bytes]
    encoding: Encoding
    aggregator: WeightedAverage | ClippedSum
    arrays: ArrayRecord
    #: With DP: the fewest masked vectors whose noise shares make up the round's noise.
    quorum: int
    message_type: str
    group_id: str


class SecAggPlus(WrappedStrategy):
    """Secure aggregation (SecAgg+) of a strategy's training phase; see the module's
    description for the protocol, and ``docs/privacy.md`` for what it guarantees.

    The nodes must run :func:`secaggplus_mod`. Federated evaluation is the wrapped
    strategy's, not secured.

    Parameters
    ----------
    strategy
        The strategy whose training is aggregated securely: one whose training aggregator
        is a :class:`~corolla.strategy.WeightedAverage` (FedAvg, FedAvgM, FedProx,
        FedAdagrad, FedAdam, FedYogi), or :class:`~corolla.privacy.CentralDP` with
        ``clipping="client"`` and a fixed clipping norm around one of them: the nodes
        then clip and noise their updates (see the module's description).
    clipping_range
        Each element of a node's update delta (updated minus global arrays) is clipped to
        ``[-clipping_range, clipping_range]`` before it is quantized; the quantization error
        of the average is proportional to it (:mod:`._secagg_encoding`).
    metrics
        Names of the training metrics to average securely (weighted by ``num-examples``);
        other metrics stay on the nodes.
    metrics_range
        The clipping range of those metrics' values.
    max_weight
        A node's weight (``num-examples``, rounded to an integer) is capped at this, so the
        sum of the weights fits the ring: ``nodes * max_weight < 2**32``. The error bound
        grows with ``max_weight`` over the nodes' mean weight: keep it near the largest.
    neighbours
        The degree ``k`` of the communication graph; by default
        ``min(n - 1, 2 ceil(1.5 log2 n))`` for ``n`` sampled nodes; ``n - 1`` (or more) is
        SecAgg's complete graph. Rounded up to even below ``n - 1``.
    threshold_fraction
        ``t = floor(threshold_fraction * k) + 1`` of a node's neighbours recover its
        secrets; in ``[0.5, 1)``. A node survives the dropout of ``k - t`` neighbours.
    noise_quorum
        With CentralDP: the fraction of the sampled nodes (rounded up, at least 2) whose
        noise shares together make up the round's noise. Each node's share is
        ``1 / sqrt(quorum)`` of it, so the lower the quorum the more dropouts a round
        survives and the noisier the sum when all nodes stay (by ``sqrt(n / quorum)``).
    timeout
        Seconds to wait for the replies of the setup, share-keys and unmask stages (the
        masked-input stage waits as the run's training phase does); None waits for all.
    seed, rng
        Randomness of the communication graph.

    Raises
    ------
    ConfigError
        If a setting is out of its range.
    """

    def __init__(
        self,
        strategy: Strategy,
        *,
        clipping_range: float = 1.0,
        metrics: Sequence[str] = (),
        metrics_range: float = 1e4,
        max_weight: int = 100_000,
        neighbours: int | None = None,
        threshold_fraction: float = 0.5,
        noise_quorum: float = 0.8,
        timeout: float | None = None,
        seed: int | None = None,
        rng: np.random.Generator | None = None,
    ) -> None:
        check_quantization(clipping_range, 1)
        check_quantization(metrics_range, 1)
        if isinstance(max_weight, bool) or not 1 <= max_weight < _RING // 2:
            raise ConfigError(f"max_weight must be in 1..2**31-1, got {max_weight!r}")
        if neighbours is not None and neighbours < 1:
            raise ConfigError(f"neighbours must be >= 1, got {neighbours}")
        reconstruction_threshold(2, threshold_fraction)
        if timeout is not None and timeout <= 0:
            raise ConfigError(f"timeout must be positive or None, got {timeout}")
        if not 0.0 < noise_quorum <= 1.0:
            raise ConfigError(f"noise_quorum must be in (0, 1], got {noise_quorum}")
        if isinstance(strategy, CentralDP):
            _check_private(strategy, clipping_range)
        super().__init__(strategy)
        self.clipping_range = float(clipping_range)
        self.metrics = tuple(metrics)
        self.metrics_range = float(metrics_range)
        self.max_weight = max_weight
        self.neighbours = neighbours
        self.threshold_fraction = threshold_fraction
        self.noise_quorum = noise_quorum
        self.timeout = timeout
        self.rng = rng if rng is not None else np.random.default_rng(seed)
        self._round: _Round | None = None

    # -- the hooks --------------------------------------------------------------------

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> RoundPlan:
        """The masked-input messages of ``server_round``, after its setup and share-keys
        stages (run here, over ``grid``).

        Raises
        ------
        ConfigError
            If the wrapped strategy's training aggregate is not a weighted average, the
            arrays are not real-valued, fewer than 2 nodes are sampled, or
            ``nodes * max_weight`` does not fit 2**32.
        """
        plan = self.strategy.configure_train(server_round, arrays, config, grid)
        self._round = None
        inner = plan.aggregator
        private = isinstance(self.strategy, CentralDP) and isinstance(inner, ClippedSum)
        if not private and (not isinstance(inner, WeightedAverage) or inner.arrays_key is None):
            raise ConfigError(
                f"SecAgg+ sums the nodes' weighted updates, but {type(self.strategy).__name__} "
                f"aggregates training with {type(inner).__name__}, which is no weighted sum; "
                "wrap FedAvg, FedAvgM, FedProx, FedAdagrad, FedAdam or FedYogi"
            )
        if not plan.messages:
            return plan
        check_arrays(arrays)
        requests = {m.metadata.dst_node_id: m for m in plan.messages}
        nodes = list(requests)
        if len(nodes) < 2:
            raise ConfigError(
                f"secure aggregation needs at least 2 nodes per round, {len(nodes)} sampled; "
                "raise the strategy's min_train_nodes"
            )
        if len(nodes) * self.max_weight >= _RING:
            raise ConfigError(
                f"{len(nodes)} nodes x max_weight {self.max_weight} overflows 2**32; "
                f"lower max_weight below {_RING // len(nodes)}"
            )
        assert isinstance(inner, WeightedAverage | ClippedSum) and inner.arrays_key is not None
        dp, quorum = None, 0
        if isinstance(inner, ClippedSum):
            quorum = min(len(nodes), max(2, math.ceil(self.noise_quorum * len(nodes))))
            noise = self._private().noise_multiplier * inner.clipping_norm
            dp = DPShare(inner.clipping_norm, noise_share_stddev(noise, quorum))
        encoding = Encoding(
            dp=dp,
            clipping_range=self.clipping_range,
            metrics_range=self.metrics_range,
            levels=levels_for(len(nodes)),
            max_weight=self.max_weight,
            metrics=self.metrics,
            spec=tuple(array_spec(arrays)),
            arrays_key=inner.arrays_key,
            metrics_key=inner.metrics_key,
            weight_key=inner.weight_key,
        )
        degree = self._degree(len(nodes))
        threshold = reconstruction_threshold(degree, self.threshold_fraction)
        graph = harary_graph(nodes, degree, self.rng)
        first = plan.messages[0].metadata
        self._round = _Round(
            grid=grid,
            server_round=server_round,
            graph=graph,
            threshold=threshold,
            masked=frozenset(),
            masking_keys={},
            encoding=encoding,
            aggregator=inner,
            arrays=arrays,
            quorum=quorum,
            message_type=first.message_type,
            group_id=first.group_id,
        )
        try:
            messages = self._prepare(self._round, requests)
        except _Abort as exc:
            # Tell every sampled node: each forgets the round's secrets and answers with
            # an error saying why, so the round counts its training as failed, as rounds
            # whose replies all failed do (and a run of nothing else ends in an error).
            state, self._round = self._round, None
            self._abort(state, exc)
            notice = {"reason": f"the server aborted the round: {exc}"}
            messages = [
                self._message(
                    state, node, RecordDict({SECAGG_KEY: self._record(state, Stage.ABORT, notice)})
                )
                for node in nodes
            ]
            return RoundPlan(messages, MaskedSum(0, frozenset()))
        return RoundPlan(messages, MaskedSum(encoding.length, self._round.masked))

    def aggregate_train(
        self, server_round: int, reduction: Reduction[Any], arrays: ArrayRecord
    ) -> tuple[ArrayRecord, MetricRecord]:
        """Unmask the sum of the masked vectors (the unmask stage) and let the wrapped
        strategy aggregate the reply standing for the survivors; on an abort, keep
        ``arrays``."""
        state, self._round = self._round, None
        if state is None or state.server_round != server_round:
            return arrays, MetricRecord()  # the round aborted before the masked input
        masked: MaskedSum = reduction.aggregator
        try:
            total = self._unmask(state, masked)
        except _Abort as exc:
            self._abort(state, exc)
            return arrays, MetricRecord()
        standing: Any
        if state.encoding.dp is not None:
            decoded = state.encoding.decode_sum(total)
            per_node = state.encoding.dp.noise_stddev
            standing = NoisedSum(
                decoded.count, decoded.sums, decoded.metrics, per_node * math.sqrt(decoded.count)
            )
        else:
            assert isinstance(state.aggregator, WeightedAverage)
            state.aggregator.add(state.encoding.decode(total, state.arrays), 0)
            standing = _Standing(state.aggregator, masked.count)
        return self.strategy.aggregate_train(
            server_round, Reduction(standing, reduction.errors, reduction.missing), arrays
        )

    def _private(self) -> CentralDP:
        assert isinstance(self.strategy, CentralDP)
        return self.strategy

    def generators(self) -> list[np.random.Generator]:
        return [*self.strategy.generators(), self.rng]

    # -- the stages -------------------------------------------------------------------

    def _degree(self, num_nodes: int) -> int:
        degree = self.neighbours if self.neighbours is not None else default_neighbours(num_nodes)
        degree = min(degree, num_nodes - 1)
        return degree + 1 if degree < num_nodes - 1 and degree % 2 else degree

    def _prepare(self, state: _Round, requests: Mapping[int, Message]) -> list[Message]:
        """Run the setup and share-keys stages; the masked-input messages."""
        graph, threshold = state.graph, state.threshold
        quorum = {"noise-quorum": state.quorum} if state.quorum else {}
        setup = {
            u: {
                "neighbours": graph[u],
                "threshold": threshold,
                **state.encoding.to_config(),
                **quorum,
            }
            for u in graph
        }
        keys: dict[int, tuple[bytes, bytes]] = {}
        for u, record in self._exchange(state, Stage.SETUP, setup).items():
            try:
                c_pk, s_pk = require(record, "c-pk", bytes), require(record, "s-pk", bytes)
                if len(c_pk) != SECRET_BYTES or len(s_pk) != SECRET_BYTES:
                    raise MessageError("public keys must be 32 bytes")
            except MessageError as exc:
                self._reject(state, Stage.SETUP, u, exc)
                continue
            keys[u] = (c_pk, s_pk)
        alive = _prune(graph, set(keys), threshold)
        _check_enough(alive, Stage.SETUP, len(graph), threshold, state.quorum)

        share: dict[int, dict[str, Any]] = {}
        for u in alive:
            peers = [v for v in graph[u] if v in alive]
            share[u] = {
                "node-ids": peers,
                "c-pks": [keys[v][0] for v in peers],
                "s-pks": [keys[v][1] for v in peers],
            }
        mailbox: dict[int, dict[int, bytes]] = {u: {} for u in alive}
        shared: set[int] = set()
        for u, record in self._exchange(state, Stage.SHARE_KEYS, share).items():
            try:
                to = require(record, "to", int, many=True)
                ciphertexts = require(record, "ciphertexts", bytes, many=True)
                if to != share[u]["node-ids"] or len(ciphertexts) != len(to):
                    raise MessageError("the ciphertexts are not addressed to the node's peers")
            except MessageError as exc:
                self._reject(state, Stage.SHARE_KEYS, u, exc)
                continue
            for v, ciphertext in zip(to, ciphertexts):
                mailbox[v][u] = ciphertext
            shared.add(u)
        masked = _prune(graph, shared, threshold)
        _check_enough(masked, Stage.SHARE_KEYS, len(graph), threshold, state.quorum)

        state.masked = frozenset(masked)
        state.masking_keys = {u: keys[u][1] for u in masked}
        messages = []
        for v in sorted(masked):
            senders = [u for u in graph[v] if u in masked]
            record = self._record(
                state,
                Stage.MASKED_INPUT,
                {"from": senders, "ciphertexts": [mailbox[v][u] for u in senders]},
            )
            content = requests[v].content | {SECAGG_KEY: record}
            messages.append(self._message(state, v, content))
        return messages

    def _unmask(self, state: _Round, masked: MaskedSum) -> np.ndarray[Any, Any]:
        """Run the unmask stage; the sum of the survivors' encoded vectors."""
        graph, threshold = state.graph, state.threshold
        survivors = set(masked.nodes)
        dropped = set(state.masked) - survivors
        if masked.total is None or len(survivors) < 2:
            raise _Abort(
                Stage.MASKED_INPUT,
                f"{len(survivors)} masked vectors arrived, at least 2 are needed",
            )
        if len(survivors) < state.quorum:
            raise _Abort(Stage.MASKED_INPUT, _short_of_noise(len(survivors), state.quorum))
        count = {"survivors-total": len(survivors)} if state.quorum else {}
        requests: dict[int, dict[str, Any]] = {
            u: {
                "dropped": [v for v in graph[u] if v in dropped],
                "survivors": [v for v in graph[u] if v in survivors],
                **count,
            }
            for u in survivors
        }
        seed_shares: dict[int, list[Share]] = {u: [] for u in survivors}
        key_shares: dict[int, list[Share]] = {v: [] for v in dropped}
        for holder, record in self._exchange(state, Stage.UNMASK, requests).items():
            try:
                keys, seeds = _read_shares(holder, record, requests[holder])
            except MessageError as exc:
                self._reject(state, Stage.UNMASK, holder, exc)
                continue
            for v, share in keys:
                key_shares[v].append(share)
            for u, share in seeds:
                seed_shares[u].append(share)

        started = time.perf_counter()
        length = masked.total.size
        run_id = state.grid.run_id
        masks = np.zeros(length, dtype=np.uint32)
        scratch = np.empty(length, dtype=np.uint32)
        try:
            for u in sorted(survivors):
                seed = _recover(seed_shares[u], threshold, u, "self-mask seed")
                np.add(masks, expand_mask(seed, length, out=scratch), out=masks)
            for v in sorted(dropped):
                key = _recover(key_shares[v], threshold, v, "masking key")
                if public_key(key) != state.masking_keys[v]:
                    raise AggregationError(
                        f"the masking key of node {v} recovered from its neighbours' shares "
                        "does not match its public key: shares were altered"
                    )
                loaded = private_key(key)
                for u in graph[v]:
                    if u not in survivors:
                        continue
                    info = mask_info(run_id, state.server_round, u, v)
                    pair = agree(loaded, state.masking_keys[u], info)
                    # ``u`` added the mask it shares with a larger id, subtracted the other.
                    op = np.add if u < v else np.subtract
                    op(masks, expand_mask(pair, length, out=scratch), out=masks)
        except (AggregationError, MessageError) as exc:
            raise _Abort(Stage.UNMASK, str(exc)) from exc
        total: np.ndarray[Any, Any] = np.subtract(masked.total, masks)
        # The server's own work of the round, which grows with the nodes: what a user
        # sizing a federation wants to see.
        self._emit(
            state,
            "secagg.unmasked",
            None,
            Stage.UNMASK,
            seconds=time.perf_counter() - started,
            survivors=len(survivors),
            dropped=len(dropped),
        )
        return total

    def _record(self, state: _Round, stage: str, entries: Mapping[str, Any]) -> ConfigRecord:
        return ConfigRecord({"stage": stage, "round": state.server_round, **entries})

    def _message(self, state: _Round, node_id: int, content: RecordDict) -> Message:
        return Message(
            content, dst_node_id=node_id, message_type=state.message_type, group_id=state.group_id
        )

    def _exchange(
        self, state: _Round, stage: str, requests: Mapping[int, Mapping[str, Any]]
    ) -> dict[int, ConfigRecord]:
        """Send each node its request of ``stage``; the replies' records by node. A node
        that answers with an error, a malformed reply or not in time is left out, and an
        event says so."""
        grid = state.grid
        messages = [
            self._message(
                state, node, RecordDict({SECAGG_KEY: self._record(state, stage, entries)})
            )
            for node, entries in requests.items()
        ]
        replies: dict[int, ConfigRecord] = {}
        answered: set[int] = set()
        for reply in grid.send_and_receive(messages, self.timeout):
            node = reply.metadata.src_node_id
            if node not in requests or node in answered:
                continue
            answered.add(node)
            record = None if reply.has_error() else reply.content.get(SECAGG_KEY)
            if isinstance(record, ConfigRecord):
                replies[node] = record
                continue
            reason = reply.error.reason if reply.has_error() else "no SecAgg+ record"
            code = reply.error.code if reply.has_error() else int(ErrorCode.INVALID_REPLY)
            self._emit(state, "reply.error", node, stage, code=code, reason=reason)
        for node in requests:
            if node not in answered:
                self._emit(state, "reply.missing", node, stage)
        return replies

    def _emit(self, state: _Round, kind: str, node: int | None, stage: str, **data: Any) -> None:
        event = Event(
            kind,
            state.grid.run_id,
            state.server_round,
            node_id=node,
            data={"phase": f"secagg.{stage}", **data},
        )
        state.grid.emit(event)

    def _reject(self, state: _Round, stage: str, node: int, exc: MessageError) -> None:
        reason = f"reply from node {node} rejected: {exc}"
        self._emit(state, "reply.error", node, stage, code=int(exc.code), reason=reason)

    def _abort(self, state: _Round, exc: _Abort) -> None:
        self._emit(state, "secagg.abort", None, exc.stage, reason=str(exc))


class _Standing:
    """The wrapped strategy's aggregator holding the one reply that stands for ``count``
    surviving nodes: minimums on replies count the nodes, not the one reply."""

    def __init__(self, aggregator: WeightedAverage, count: int) -> None:
        self._aggregator = aggregator
        self.count = count

    def __getattr__(self, name: str) -> Any:
        return getattr(self._aggregator, name)


def _prune(graph: Mapping[int, list[int]], alive: set[int], threshold: int) -> set[int]:
    """The nodes of ``alive`` that keep at least ``threshold`` neighbours in it, after
    repeatedly dropping those that do not (dropping one lowers its neighbours' count)."""
    alive = set(alive)
    while True:
        weak = {u for u in alive if sum(v in alive for v in graph[u]) < threshold}
        if not weak:
            return alive
        alive -= weak


def _check_enough(alive: set[int], stage: str, sampled: int, threshold: int, quorum: int) -> None:
    if len(alive) < 2:
        raise _Abort(
            stage,
            f"after the {stage} stage {len(alive)} of {sampled} nodes keep {threshold} "
            "neighbours (the threshold); do the nodes' ClientApps use secaggplus_mod?",
        )
    if len(alive) < quorum:
        raise _Abort(stage, f"after the {stage} stage, " + _short_of_noise(len(alive), quorum))


def _short_of_noise(left: int, quorum: int) -> str:
    return (
        f"{left} nodes are left, fewer than the {quorum} whose noise shares make up the "
        "noise differential privacy needs: the sum is not unmasked"
    )


def _check_private(strategy: CentralDP, clipping_range: float) -> None:
    """Check that SecAgg+ can carry ``strategy``'s differential privacy.

    Raises
    ------
    ConfigError
        If it clips on the server or adapts its clipping norm, or an update within the
        norm does not fit the clipping range.
    """
    if strategy.clipping != "client":
        raise ConfigError(
            "under secure aggregation the server never sees an update, so it cannot clip "
            "one: give CentralDP clipping='client' (the nodes' secaggplus_mod clips)"
        )
    if strategy.adaptive is not None:
        raise ConfigError(
            "adaptive clipping needs the count of clipped updates, which secure aggregation "
            "does not release: use a fixed clipping norm with SecAggPlus"
        )
    if clipping_range < strategy.clipping_norm:
        raise ConfigError(
            f"clipping_range {clipping_range:g} is below the clipping norm "
            f"{strategy.clipping_norm:g}: an update within the norm would be cut; choose "
            "about the norm plus 4 standard deviations of a node's noise share"
        )


def _recover(shares: list[Share], threshold: int, node: int, what: str) -> bytes:
    """The secret ``what`` of ``node`` from ``threshold`` of its shares, checked against
    one more share where there is one.

    Raises
    ------
    AggregationError
        If there are fewer than ``threshold`` shares, or they disagree.
    """
    if len(shares) < threshold:
        raise AggregationError(
            f"the {what} of node {node} has {len(shares)} shares from surviving neighbours, "
            f"{threshold} needed: too many nodes dropped out"
        )
    return combine_shares(shares[: threshold + 1], threshold)


def _read_shares(
    holder: int, record: ConfigRecord, asked: Mapping[str, list[int]]
) -> tuple[list[tuple[int, Share]], list[tuple[int, Share]]]:
    """The masking-key shares and self-mask seed shares in ``holder``'s unmask reply.

    Raises
    ------
    MessageError
        If the reply does not hold the shares asked for.
    """
    dropped = require(record, "dropped", int, many=True)
    survivors = require(record, "survivors", int, many=True)
    key_data = require(record, "dropped-shares", bytes, many=True)
    seed_data = require(record, "survivor-shares", bytes, many=True)
    if (dropped, survivors) != (asked["dropped"], asked["survivors"]) or (
        len(key_data),
        len(seed_data),
    ) != (len(dropped), len(survivors)):
        raise MessageError("the shares are not those asked for")
    # A holder's share point is its node id (see the node's share-keys stage).
    return (
        [(v, Share.from_bytes(holder, data)) for v, data in zip(dropped, key_data)],
        [(u, Share.from_bytes(holder, data)) for u, data in zip(survivors, seed_data)],
    )
