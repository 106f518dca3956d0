"""Light node clients for ``benchmarks/deploy.py``: many Fleet clients in one asyncio process.

Each client speaks the Fleet protocol as ``corolla node`` does (docs/wire-protocol.md),
on its own gRPC connection: ``RegisterNode``, a heartbeat task, a ``Receive`` stream kept
open, and for each message ``GetRun`` (once per run), ``PullArrays`` for arrays it lacks
that did not come inline, then, for a reply whose arrays do not all fit inline,
``StatArrays`` and ``PushArrays`` for what the link lacks, and the reply on its
``SendReplies`` stream, kept open beside ``Receive``. With ``--keys``, each client signs
its registration with its key, offering a session key, and authenticates every later
request with it, as ``corolla node`` does for a link with auth on. It does not
install the app bundle: "training" is done here, adding the run config's ``step`` to every
array plus ``client_index / 2**20`` so that every client's update is distinct (the link
stores, and is sent, one upload per client, as with real nodes). It works on the protobuf
messages directly, as a node written in another language would: every array received is
checked (size and SHA-256) and decoded, every update encoded and hashed, but no Corolla
records are built around them, so that the clients, which share the link's machine
here, take as little of it as the protocol allows.

For each message received it records the delay from the message's ``created_at`` (set
when the ServerApp built it) to its arrival on the ``Receive`` stream, on this machine's
clock. On SIGTERM, SIGINT or after ``--duration`` seconds it closes its connections and
writes one JSON object of counts and delays to ``--stats``::

    python benchmarks/_deploy_nodes.py --link 127.0.0.1:9092 --clients 250 --first 0 \\
        --stats /tmp/nodes0.json --duration 600
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from corolla.core import decode_array
from corolla.transport import (
    INLINE_ARRAY_BYTES,
    EncodedArray,
    bearer_metadata,
    channel_options,
    check_array_entry,
    chunk_messages,
    fleet_pb2,
    fleet_pb2_grpc,
    inline_array,
    message_pb2,
    run_pb2,
    signed_reply_body,
    user_config_from_proto,
    user_config_to_proto,
)
from corolla.trust import (
    PUBLIC_KEY_KEY,
    REPLY_ITEM_METHOD,
    NodeKey,
    RequestSignature,
    SessionKey,
    SessionOffer,
    request_body,
    sign_request,
)

#: Seconds a single unary call may take before the client counts it as failed.
CALL_TIMEOUT_S = 60.0


class Stats:
    """What the clients of this process saw."""

    def __init__(self) -> None:
        self.registered = 0
        self.received = 0
        self.duplicates = 0
        self.replied = 0
        self.errors: list[str] = []
        self.delivery_s: list[float] = []
        self.bytes_pulled = 0
        self.bytes_pushed = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "registered": self.registered,
            "received": self.received,
            "duplicates": self.duplicates,
            "replied": self.replied,
            "errors": len(self.errors),
            "first_errors": self.errors[:5],
            "delivery_s": self.delivery_s,
            "bytes_pulled": self.bytes_pulled,
            "bytes_pushed": self.bytes_pushed,
        }


class LightNode:
    """One Fleet client on its own channel."""

    def __init__(
        self,
        address: str,
        index: int,
        stats: Stats,
        stop: asyncio.Event,
        key: NodeKey | None = None,
    ) -> None:
        self._address = address
        self._key = key
        self._index = index
        self._stats = stats
        self._stop = stop
        self._steps: dict[int, float] = {}
        self._arrays: dict[str, np.ndarray] = {}
        self._seen: set[str] = set()
        self._session: SessionKey | None = None

    async def serve(self) -> None:
        # A channel per client: every node has its own connection to the link.
        options = [*channel_options(), ("grpc.use_local_subchannel_pool", 1)]
        async with grpc.aio.insecure_channel(self._address, options=options) as channel:
            stub = fleet_pb2_grpc.FleetStub(channel)
            request = fleet_pb2.RegisterNodeRequest(
                node_config=user_config_to_proto({"partition-id": self._index})
            )
            # Waits for the link to listen, as a node retrying with backoff would.
            signed: tuple[tuple[str, str], ...] = ()
            offer = None
            if self._key is not None:
                offer = SessionOffer()
                request.session_key = offer.public
                signed = (
                    *self._signed((), "RegisterNode", request),
                    (PUBLIC_KEY_KEY, self._key.public_text),
                )
            response = await stub.RegisterNode(
                request, metadata=signed, timeout=CALL_TIMEOUT_S, wait_for_ready=True
            )
            if offer is not None and self._key is not None and response.session_key:
                self._session = offer.agree(response.session_key, self._key.public_text)
            self._stats.registered += 1
            metadata = bearer_metadata(response.token)
            node_id = response.node_id
            beat = asyncio.create_task(
                self._heartbeat(stub, metadata, response.heartbeat_interval or 30.0)
            )
            receive = fleet_pb2.ReceiveRequest()
            call = stub.Receive(receive, metadata=self._signed(metadata, "Receive", receive))
            replies = stub.SendReplies(metadata=self._signed(metadata, "SendReplies"))
            stopper = asyncio.create_task(self._stop.wait())
            try:
                reader = asyncio.create_task(self._receive(stub, metadata, replies, node_id, call))
                await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if not reader.done():
                    call.cancel()
                    reader.cancel()
                    await asyncio.gather(reader, return_exceptions=True)
                elif reader.exception() is not None:
                    raise reader.exception()  # type: ignore[misc]
            finally:
                replies.cancel()
                stopper.cancel()
                beat.cancel()
                await asyncio.gather(beat, stopper, return_exceptions=True)

    def _signed(self, metadata: Any, method: str, request: Any = None) -> Any:
        """``metadata`` with the call's signature, when the client has a key (a link with
        auth on refuses unsigned calls)."""
        if self._key is None:
            return metadata
        body = b"" if request is None else request_body(request)
        return (*metadata, *self._sign(f"/corolla.v1.Fleet/{method}", body).metadata())

    def _sign(self, method: str, body: bytes) -> RequestSignature:
        assert self._key is not None
        if self._session is None:
            return sign_request(self._key, method, body)
        return self._session.sign(method, body)

    async def _heartbeat(self, stub: Any, metadata: Any, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                beat = fleet_pb2.HeartbeatRequest()
                await stub.Heartbeat(
                    beat, metadata=self._signed(metadata, "Heartbeat", beat), timeout=30
                )
            except grpc.aio.AioRpcError as exc:
                self._stats.errors.append(f"heartbeat: {exc.code().name}")

    async def _receive(
        self, stub: Any, metadata: Any, replies: Any, node_id: int, call: Any
    ) -> None:
        async for response in call:
            arrived = time.time()
            proto = response.message
            message_id = proto.metadata.message_id
            if message_id in self._seen:
                self._stats.duplicates += 1
                continue
            self._stats.received += 1
            self._stats.delivery_s.append(arrived - proto.metadata.created_at)
            await self._answer(stub, metadata, replies, node_id, proto)
            self._seen.add(message_id)

    async def _answer(
        self, stub: Any, metadata: Any, replies: Any, node_id: int, proto: Any
    ) -> None:
        # Works on the protobuf messages directly, as a node written in another language
        # would: every array is checked (size and hash) and decoded, the update is
        # computed, encoded and hashed, but no Corolla records are built around them.
        run_id = proto.metadata.run_id
        step = self._steps.get(run_id)
        if step is None:
            request = run_pb2.GetRunRequest(run_id=run_id)
            signed = self._signed(metadata, "GetRun", request)
            run = (await stub.GetRun(request, metadata=signed, timeout=CALL_TIMEOUT_S)).run
            step = float(user_config_from_proto(run.run_config).get("step", 0.5))
            self._steps[run_id] = step
        offset = np.float32(step + self._index / 2**20)
        request_md = proto.metadata
        reply = message_pb2.Message(
            metadata=message_pb2.Metadata(
                run_id=run_id,
                src_node_id=node_id,
                dst_node_id=request_md.src_node_id,
                reply_to_message_id=request_md.message_id,
                group_id=request_md.group_id,
                message_type=request_md.message_type,
                ttl=request_md.ttl,
                created_at=time.time(),
            )
        )
        encoded: dict[str, EncodedArray] = {}
        inline = INLINE_ARRAY_BYTES
        for named in proto.content.records:
            if named.WhichOneof("record") != "array_record":
                continue
            out = reply.content.records.add(name=named.name).array_record
            for entry in named.array_record.entries:
                if entry.data:
                    array = inline_array(entry)
                else:
                    array = await self._array(stub, metadata, entry)
                update = EncodedArray.from_array(array + offset)
                added = out.entries.add(
                    name=entry.name,
                    dtype=update.dtype,
                    shape=update.shape,
                    sha256=update.sha256,
                    encoded_size=update.size,
                )
                if update.size <= inline:
                    added.data = update.tobytes()
                    inline -= update.size
                else:
                    encoded[update.sha256] = update
        metrics = reply.content.records.add(name="metrics").metric_record
        metrics.entries.add(name="num-examples").value.int_value = 1
        await self._push_missing(stub, metadata, encoded)
        item = fleet_pb2.SendReplyRequest(message=reply)
        if self._key is not None:
            signature = self._sign(REPLY_ITEM_METHOD, signed_reply_body(reply))
            item.signature.timestamp = signature.timestamp
            item.signature.nonce = signature.nonce
            if signature.mac:
                item.signature.mac = signature.signature
            else:
                item.signature.signature = signature.signature
        await replies.write(item)
        answer = await asyncio.wait_for(replies.read(), CALL_TIMEOUT_S)
        if answer.WhichOneof("outcome") != "message_id":
            self._stats.errors.append(f"reply refused: {answer}"[:300])
            return
        self._stats.replied += 1

    async def _array(self, stub: Any, metadata: Any, entry: Any) -> np.ndarray:
        """An array sent by reference: downloaded once, the current model's kept."""
        check_array_entry(entry)
        array = self._arrays.get(entry.sha256)
        if array is None:
            self._arrays.clear()  # keep only the current model
            array = await self._pull(stub, metadata, entry.sha256, entry.encoded_size)
            self._arrays[entry.sha256] = array
        return array

    async def _pull(self, stub: Any, metadata: Any, sha256: str, size: int) -> np.ndarray:
        buffer = bytearray(size)
        offset = 0
        request = fleet_pb2.PullArraysRequest(sha256=sha256, offset=0)
        signed = self._signed(metadata, "PullArrays", request)
        async for chunk in stub.PullArrays(request, metadata=signed, timeout=CALL_TIMEOUT_S):
            buffer[chunk.offset : chunk.offset + len(chunk.data)] = chunk.data
            offset += len(chunk.data)
        if offset != size:
            raise RuntimeError(f"pulled {offset} of {size} bytes of {sha256[:12]}")
        self._stats.bytes_pulled += size
        return decode_array(bytes(buffer))

    async def _push_missing(
        self, stub: Any, metadata: Any, encoded: dict[str, EncodedArray]
    ) -> None:
        if not encoded:
            return
        stat = fleet_pb2.StatArraysRequest(sha256=list(encoded))
        held = await stub.StatArrays(
            stat, metadata=self._signed(metadata, "StatArrays", stat), timeout=CALL_TIMEOUT_S
        )
        missing = [s.sha256 for s in held.arrays if not s.complete]
        if not missing:
            return
        chunks = [c for sha256 in missing for c in chunk_messages(encoded[sha256], sha256=sha256)]
        signed = self._signed(metadata, "PushArrays")
        await stub.PushArrays(iter(chunks), metadata=signed, timeout=CALL_TIMEOUT_S)
        self._stats.bytes_pushed += sum(encoded[s].size for s in missing)


def load_keys(path: Path) -> list[NodeKey]:
    """The clients' keys, from a JSON list of Ed25519 private keys (32 bytes, hex), the
    ``i``-th for client ``i``."""
    seeds = json.loads(path.read_text())
    return [NodeKey(Ed25519PrivateKey.from_private_bytes(bytes.fromhex(s))) for s in seeds]


async def run_clients(
    address: str,
    first: int,
    count: int,
    duration: float,
    stats: Stats,
    keys: list[NodeKey] | None = None,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    clients = [
        LightNode(address, first + i, stats, stop, None if keys is None else keys[first + i])
        for i in range(count)
    ]
    tasks = [asyncio.create_task(c.serve()) for c in clients]
    timer = asyncio.create_task(asyncio.sleep(duration))
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({timer, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    timer.cancel()
    done, pending = await asyncio.wait(tasks, timeout=20)
    for task in pending:
        task.cancel()
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            stats.errors.append(f"{type(exc).__name__}: {exc}"[:300])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--link", required=True, help="the link's Fleet address")
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--first", type=int, default=0, help="index of the first client")
    parser.add_argument("--stats", type=Path, required=True, help="JSON file written at exit")
    parser.add_argument("--duration", type=float, default=600.0, help="seconds, at most")
    parser.add_argument(
        "--keys", type=Path, help="JSON list of the clients' private keys: sign every request"
    )
    args = parser.parse_args(argv)
    stats = Stats()
    keys = None if args.keys is None else load_keys(args.keys)
    try:
        asyncio.run(run_clients(args.link, args.first, args.clients, args.duration, stats, keys))
    finally:
        args.stats.write_text(json.dumps(stats.to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
