"""The node's side of SecAgg+: a ClientApp mod answering each stage of a secure round.

The node's secrets of a round (two X25519 private keys, its self-mask seed, the shares
its neighbours sent it) live in ``context.state`` between the round's messages, which the
runtime keeps per node and run (in memory in simulation, on the node's disk in
deployment), and are deleted when the node answers the unmask stage.
"""

from __future__ import annotations

import secrets
from typing import Any

import numpy as np

from ..client import CallNext
from ..core import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MessageError,
    MessageType,
    RecordDict,
)
from ._secagg_crypto import (
    SECRET_BYTES,
    agree,
    agree_keys,
    decrypt,
    encrypt,
    expand_mask,
    generate_key_pair,
    private_key,
    split_secret,
)
from ._secagg_encoding import Encoding
from ._secagg_wire import (
    MASKED_ARRAY,
    MASKED_KEY,
    SECAGG_KEY,
    Stage,
    associated_data,
    mask_info,
    require,
    share_key_info,
)

__all__ = ["secaggplus_mod"]

_ENCODING_ENTRIES = (
    "clipping-range",
    "metrics-range",
    "levels",
    "max-weight",
    "metrics",
    "arrays-key",
    "metrics-key",
    "weight-key",
    "dp-clipping-norm",
    "dp-noise-stddev",
    "noise-quorum",
)
_SHARE_BYTES = 66
#: A round: its run and number.
_Round = tuple[int, int]


def secaggplus_mod(message: Message, context: Context, call_next: CallNext) -> Message:
    """Answer the stages of SecAgg+ rounds (see :class:`SecAggPlus`); pass every other
    message on unchanged.

    In the masked-input stage the ClientApp's train handler runs as usual on the round's
    training content; its reply (updated arrays, metrics, ``num-examples``) never leaves
    the node: the node sends only that reply encoded and masked, which the server can
    unmask only in the sum over the round's nodes.

    Use it as the ClientApp's mod::

        app = ClientApp(mods=[secaggplus_mod])

    When the server's strategy is differentially private (SecAggPlus around CentralDP),
    the mod also clips the update to the round's clipping norm and adds the node's share
    of the noise before masking it, drawn from randomness the operating system seeds:
    the ClientApp needs no other mod.

    Raises
    ------
    MessageError
        If the server aborted the round (the node forgets the round's secrets), a stage
        message is malformed or out of order, its settings are unsafe (a
        threshold of at most half the neighbours, too few neighbours left, repeated
        public keys), a share does not authenticate, or the server asks for both the
        self-mask share and the masking-key share of one node. The node then drops out
        of the round; the error reply says why.
    """
    if message.metadata.message_type != MessageType.TRAIN or not message.has_content():
        return call_next(message, context)
    record = message.content.get(SECAGG_KEY)
    if record is None:
        return call_next(message, context)
    if not isinstance(record, ConfigRecord):
        raise MessageError(f"the {SECAGG_KEY!r} record must be a ConfigRecord")
    stage = require(record, "stage", str)
    # A round is named by its run (as the server's grid stamps it) and number.
    server_round = (message.metadata.run_id, require(record, "round", int))
    if stage == Stage.SETUP:
        reply = _setup(context, record, server_round)
    elif stage == Stage.SHARE_KEYS:
        reply = _share_keys(context, record, server_round)
    elif stage == Stage.MASKED_INPUT:
        return _masked_input(message, context, record, server_round, call_next)
    elif stage == Stage.UNMASK:
        reply = _unmask(context, record, server_round)
    elif stage == Stage.ABORT:
        _forget(context)
        reason = record.get("reason")
        why = reason if isinstance(reason, str) else "no reason given"
        raise MessageError(f"SecAgg+ round {server_round[1]}: {why}")
    else:
        raise MessageError(f"unknown SecAgg+ stage {stage!r}")
    return Message(RecordDict({SECAGG_KEY: ConfigRecord(reply)}), reply_to=message)


def _save(context: Context, entries: dict[str, Any]) -> None:
    context.state = context.state | {SECAGG_KEY: ConfigRecord(entries)}


def _forget(context: Context) -> None:
    if SECAGG_KEY in context.state:
        context.state = RecordDict((k, v) for k, v in context.state.items() if k != SECAGG_KEY)


def _load(context: Context, stage: str, server_round: _Round) -> dict[str, Any]:
    """The node's secrets of ``server_round`` (run, round), kept when it answered ``stage``.

    Raises
    ------
    MessageError
        If the node did not just answer ``stage`` of that round.
    """
    record = context.state.get(SECAGG_KEY)
    have = None
    if isinstance(record, ConfigRecord):
        have = (record.get("stage"), (record.get("run"), record.get("round")))
    if not isinstance(record, ConfigRecord) or have != (stage, server_round):
        raise MessageError(
            f"SecAgg+ message of (run, round) {server_round} out of order: the node expected "
            f"the stage after {stage!r}, its state is at {have}"
        )
    return dict(record)


def _distinct_subset(ids: list[int], allowed: list[int], what: str) -> None:
    if len(set(ids)) != len(ids) or not set(ids) <= set(allowed):
        raise MessageError(f"{what} {ids} must be distinct nodes among {allowed}")


def _setup(context: Context, record: ConfigRecord, server_round: _Round) -> dict[str, Any]:
    neighbours: list[int] = require(record, "neighbours", int, many=True)
    threshold: int = require(record, "threshold", int)
    if context.node_id in neighbours or len(set(neighbours)) != len(neighbours):
        raise MessageError(f"neighbours {neighbours} must be distinct other nodes")
    if not len(neighbours) / 2 < threshold <= len(neighbours):
        raise MessageError(
            f"threshold {threshold} is unsafe for {len(neighbours)} neighbours: it must be "
            "above half of them (so no server can get both secrets of a node) and at most all"
        )
    masking, encryption = generate_key_pair(), generate_key_pair()
    state: dict[str, Any] = {
        "stage": Stage.SETUP,
        "run": server_round[0],
        "round": server_round[1],
        "neighbours": neighbours,
        "threshold": threshold,
        "c-sk": encryption.private,
        "s-sk": masking.private,
    }
    state.update({name: record[name] for name in _ENCODING_ENTRIES if name in record})
    _save(context, state)
    return {"c-pk": encryption.public, "s-pk": masking.public}


def _share_keys(context: Context, record: ConfigRecord, server_round: _Round) -> dict[str, Any]:
    state = _load(context, Stage.SETUP, server_round)
    peers: list[int] = require(record, "node-ids", int, many=True)
    c_pks: list[bytes] = require(record, "c-pks", bytes, many=True)
    s_pks: list[bytes] = require(record, "s-pks", bytes, many=True)
    _distinct_subset(peers, state["neighbours"], "share-keys nodes")
    if not len(peers) == len(c_pks) == len(s_pks):
        raise MessageError("share-keys lists of nodes and public keys differ in length")
    if len(peers) < state["threshold"]:
        raise MessageError(
            f"only {len(peers)} neighbours are left, fewer than the threshold "
            f"{state['threshold']}: the node's secrets could not be recovered"
        )
    if len(set(c_pks) | set(s_pks)) != 2 * len(peers):
        raise MessageError("the neighbours' public keys are not all distinct")
    me, (run_id, number) = context.node_id, server_round
    seed = secrets.token_bytes(SECRET_BYTES)
    seed_shares = split_secret(seed, state["threshold"], peers)
    key_shares = split_secret(state["s-sk"], state["threshold"], peers)
    ciphertexts, incoming = [], []
    c_sk = private_key(state.pop("c-sk"))  # not needed past this stage: not kept
    for peer, c_pk, seed_share, key_share in zip(peers, c_pks, seed_shares, key_shares):
        # One agreement gives the key of each direction: to encrypt for the peer now,
        # and to open what the peer sends in the masked-input stage.
        infos = [share_key_info(run_id, number, me, peer), share_key_info(run_id, number, peer, me)]
        key, key_in = agree_keys(c_sk, c_pk, infos)
        incoming.append(key_in)
        ciphertexts.append(
            encrypt(
                key,
                seed_share.to_bytes() + key_share.to_bytes(),
                associated_data(run_id, number, me, peer),
            )
        )
    state.update(
        stage=Stage.SHARE_KEYS,
        peers=peers,
        **{"s-pks": s_pks, "seed": seed, "share-keys": incoming},
    )
    _save(context, state)
    return {"to": peers, "ciphertexts": ciphertexts}


def _open(context: Context, state: dict[str, Any], sender: int, ciphertext: bytes) -> bytes:
    """The shares ``sender`` sent this node (its seed share, then its key share).

    Raises
    ------
    MessageError
        If they do not authenticate.
    """
    key = state["share-keys"][state["peers"].index(sender)]
    ad = associated_data(state["run"], state["round"], sender, context.node_id)
    plain = decrypt(key, ciphertext, ad)
    if len(plain) != 2 * _SHARE_BYTES:
        raise MessageError(f"the shares from node {sender} are {len(plain)} bytes")
    return plain


def _masked_input(
    message: Message,
    context: Context,
    record: ConfigRecord,
    server_round: _Round,
    call_next: CallNext,
) -> Message:
    state = _load(context, Stage.SHARE_KEYS, server_round)
    senders: list[int] = require(record, "from", int, many=True)
    ciphertexts: list[bytes] = require(record, "ciphertexts", bytes, many=True)
    _distinct_subset(senders, state["peers"], "masked-input senders")
    if len(senders) != len(ciphertexts):
        raise MessageError("masked-input lists of senders and ciphertexts differ in length")
    if len(senders) < state["threshold"]:
        raise MessageError(
            f"only {len(senders)} neighbours shared keys, fewer than the threshold "
            f"{state['threshold']}: the node's secrets could not be recovered"
        )
    # Open the shares now, refusing forged ones before the node trains; the node keeps
    # them (as it keeps its private keys) until it answers the unmask stage.
    shares = [_open(context, state, v, c) for v, c in zip(senders, ciphertexts)]
    state.update(stage=Stage.MASKED_INPUT, senders=senders, shares=shares)
    _save(context, state)

    content = RecordDict((k, v) for k, v in message.content.items() if k != SECAGG_KEY)
    reply = call_next(Message(content, metadata=message.metadata), context)
    if reply.has_error():
        return reply
    encoding_record = ConfigRecord({k: state[k] for k in _ENCODING_ENTRIES if k in state})
    arrays_key = require(encoding_record, "arrays-key", str)
    global_arrays = content.get(arrays_key)
    if not isinstance(global_arrays, ArrayRecord):
        raise MessageError(f"the training message has no ArrayRecord {arrays_key!r}")
    encoding = Encoding.from_config(encoding_record, global_arrays)
    vector = encoding.encode(reply.content, global_arrays)
    _add_masks(vector, context, state, senders)
    return Message(RecordDict({MASKED_KEY: ArrayRecord({MASKED_ARRAY: vector})}), reply_to=message)


def _add_masks(
    vector: np.ndarray[Any, Any], context: Context, state: dict[str, Any], senders: list[int]
) -> None:
    """Add the self mask and the pairwise masks with ``senders`` to ``vector`` in place:
    ``+`` the mask shared with a node of a larger id, ``-`` with a smaller one."""
    me, length = context.node_id, vector.size
    mask = expand_mask(state["seed"], length)
    np.add(vector, mask, out=vector)
    s_sk = private_key(state["s-sk"])
    for peer in senders:
        s_pk = state["s-pks"][state["peers"].index(peer)]
        seed = agree(s_sk, s_pk, mask_info(state["run"], state["round"], me, peer))
        expand_mask(seed, length, out=mask)
        if me < peer:
            np.add(vector, mask, out=vector)
        else:
            np.subtract(vector, mask, out=vector)


def _unmask(context: Context, record: ConfigRecord, server_round: _Round) -> dict[str, Any]:
    state = _load(context, Stage.MASKED_INPUT, server_round)
    dropped: list[int] = require(record, "dropped", int, many=True)
    survivors: list[int] = require(record, "survivors", int, many=True)
    senders: list[int] = state["senders"]
    quorum = state.get("noise-quorum")
    if quorum is not None:
        total = record.get("survivors-total")
        if not isinstance(total, int) or total < quorum:
            count = total if isinstance(total, int) else "an unstated number of"
            # A server that unmasked fewer noised vectors would see a sum with less noise
            # than differential privacy needs.
            _forget(context)
            raise MessageError(
                f"the server asks to unmask {count} masked vectors, fewer than the noise "
                f"quorum {quorum}: the node refuses to help unmask a sum with less noise"
            )
    _distinct_subset(dropped + survivors, senders, "unmask nodes")
    # ``dropped + survivors`` distinct: no node is both, so the server never gets both
    # the self-mask share and the masking-key share of one node from this node.
    shares = dict(zip(senders, state["shares"]))
    dropped_shares = [shares[v][_SHARE_BYTES:] for v in dropped]
    survivor_shares = [shares[v][:_SHARE_BYTES] for v in survivors]
    # Answer once: the round's secrets are gone, so a second unmask request is refused.
    _forget(context)
    return {
        "dropped": dropped,
        "dropped-shares": dropped_shares,
        "survivors": survivors,
        "survivor-shares": survivor_shares,
    }
