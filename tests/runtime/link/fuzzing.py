"""Fuzzing a running link: every method of its services, the requests to send them, ways
to break those requests, and what a call must end with whatever it sent.

A :class:`Method` names one RPC, how it streams, which port serves it and how to build a
valid request for it from a :class:`Target` (a running link and the ids and tokens it
gave out). The strategies break those requests: raw bytes (:func:`raw_requests`), byte
edits of a valid serialization (:func:`edited`), valid messages with fields set to
extreme values (:func:`extreme`), request streams cut short, and garbage call metadata
(:func:`metadata`). :func:`call` sends what they drew over raw channels that neither
serialize nor parse, and :func:`check_outcome` holds the call to what the link
promises: a gRPC status, short details without tracebacks or the link's paths, and a
link still alive.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import subprocess
import sysconfig
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import psutil
from google.protobuf import descriptor
from google.protobuf.message import Message as Proto
from hypothesis import strategies as st

import corolla
from corolla.core import Message, RecordDict
from corolla.transport import (
    bearer_metadata,
    chunk_messages,
    control_pb2,
    fleet_pb2,
    run_pb2,
    user_config_to_proto,
)

from ..replies import inline_reply

#: Seconds a call may take; a call that should answer at once and runs past it hangs.
CALL_S = 10.0
#: Seconds a call that waits by design (a node's Receive stream) is given.
WAITING_CALL_S = 0.5
#: Responses read from a response stream before the call is cancelled.
MAX_RESPONSES = 16
#: Longest status details a caller should read: a reason, not an echo of its request.
MAX_DETAILS = 2048
#: Bytes of metadata gRPC surely accepts by default (its soft limit, 8 KiB, less what
#: its own headers take); beyond, it may end the call itself with RESOURCE_EXHAUSTED.
METADATA_ACCEPTED = 7 * 1024
#: Text in details that tells of a traceback.
TRACEBACK_MARKERS = ("Traceback", 'File "', '.py", line')
#: Sizes of strings and repeated fields: empty, small, at the link's config limit, over
#: it, and a megabyte (well under gRPC's 64 MiB message limit, which is gRPC's to enforce).
SIZES = (0, 1, 64, 64 * 1024, 64 * 1024 + 1, 1024 * 1024)
COUNTS = (0, 1, 2, 1000, 20_000)
RSS_EVERY = 500


@dataclasses.dataclass
class Target:
    """A running ``corolla link`` and what a fuzzer needs to call it validly."""

    process: subprocess.Popen[bytes]
    state_dir: Path
    fleet_address: str
    control_address: str
    fleet: grpc.Channel
    control: grpc.Channel
    node_id: int
    token: str
    other_node_id: int
    other_token: str
    run_id: int
    bundle_sha256: str
    payload: bytes
    payload_sha256: str
    garbage_bundle: bytes
    garbage_bundle_sha256: str
    #: How much of the link's log was read (see :meth:`read_log`).
    log_read: int = 0
    #: (method, status code name) -> calls, for the report of a run.
    outcomes: collections.Counter[tuple[str, str]] = dataclasses.field(
        default_factory=collections.Counter
    )
    #: (method, status code name) -> the first details seen, for the report.
    samples: dict[tuple[str, str], str] = dataclasses.field(default_factory=dict)
    #: The link's RSS in MiB every RSS_EVERY calls, for the report.
    rss_trace: list[float] = dataclasses.field(default_factory=list)

    @property
    def log(self) -> Path:
        return self.state_dir.parent / "link.log"

    def read_log(self) -> str:
        """What the link logged since the last read."""
        with self.log.open("rb") as log:
            log.seek(self.log_read)
            text = log.read()
        self.log_read += len(text)
        return text.decode(errors="replace")

    def channel(self, port: str) -> grpc.Channel:
        return self.fleet if port == "fleet" else self.control

    @property
    def known_strings(self) -> list[str]:
        return [self.bundle_sha256, self.payload_sha256, self.garbage_bundle_sha256, self.token]

    @property
    def known_ints(self) -> list[int]:
        return [self.run_id, self.node_id, self.other_node_id, len(self.payload)]


Build = Callable[[Target], list[Proto]]


@dataclasses.dataclass(frozen=True)
class Method:
    """One RPC of the link: ``/service/name``, how it streams, where it is served, and a
    valid request (a list: one item for a unary request, the stream's items otherwise)."""

    service: str
    name: str
    kind: str  # unary_unary, unary_stream, stream_unary or stream_stream
    port: str  # fleet or control
    valid: Build
    waits: bool = False  # stays open by design: a deadline ends it
    #: The reasons of errors a response carries (refused replies on a SendReplies stream).
    reasons: Callable[[bytes], list[str]] | None = None

    @property
    def path(self) -> str:
        return f"/corolla.v1.{self.service}/{self.name}"

    @property
    def streams_requests(self) -> bool:
        return self.kind.startswith("stream_")

    def __str__(self) -> str:
        return f"{self.service}.{self.name}"


def reply(target: Target) -> fleet_pb2.SendReplyRequest:
    request = Message(RecordDict(), dst_node_id=target.node_id, message_type="train")
    request = request.with_metadata(run_id=target.run_id, message_id="f" * 64)
    update = np.arange(4, dtype=np.float32)
    return fleet_pb2.SendReplyRequest(message=inline_reply(target.node_id, request, update))


def _refusals(response: bytes) -> list[str]:
    answer = fleet_pb2.SendRepliesResponse.FromString(response)
    return [answer.error.reason] if answer.HasField("error") else []


def _submission(target: Target) -> list[Proto]:
    # A bundle that is not an app: a submission that parses is refused once stored, so
    # the fuzz starts no ServerApp.
    spec = control_pb2.RunSpec(
        bundle_sha256=target.garbage_bundle_sha256,
        bundle_size=len(target.garbage_bundle),
        run_config=user_config_to_proto({"num-server-rounds": 1}),
    )
    chunks = chunk_messages(
        target.garbage_bundle, sha256=target.garbage_bundle_sha256, chunk_size=100
    )
    return [
        control_pb2.SubmitRunRequest(spec=spec),
        *(control_pb2.SubmitRunRequest(bundle_chunk=c) for c in chunks),
    ]


METHODS = [
    Method(
        "Fleet",
        "RegisterNode",
        "unary_unary",
        "fleet",
        lambda t: [
            fleet_pb2.RegisterNodeRequest(
                attributes=user_config_to_proto({"region": "eu", "gpu": False}),
                node_config=user_config_to_proto({"partition-id": 0}),
            )
        ],
    ),
    Method("Fleet", "Heartbeat", "unary_unary", "fleet", lambda t: [fleet_pb2.HeartbeatRequest()]),
    Method(
        "Fleet",
        "Receive",
        "unary_stream",
        "fleet",
        lambda t: [fleet_pb2.ReceiveRequest(run_notices=True)],
        waits=True,
    ),
    Method("Fleet", "SendReply", "unary_unary", "fleet", lambda t: [reply(t)]),
    Method(
        "Fleet",
        "SendReplies",
        "stream_stream",
        "fleet",
        lambda t: [reply(t), reply(t)],
        reasons=_refusals,
    ),
    Method(
        "Fleet",
        "StatArrays",
        "unary_unary",
        "fleet",
        lambda t: [fleet_pb2.StatArraysRequest(sha256=[t.payload_sha256, "0" * 64])],
    ),
    Method(
        "Fleet",
        "PushArrays",
        "stream_unary",
        "fleet",
        lambda t: list(chunk_messages(t.payload, sha256=t.payload_sha256, chunk_size=400)),
    ),
    Method(
        "Fleet",
        "PullArrays",
        "unary_stream",
        "fleet",
        lambda t: [fleet_pb2.PullArraysRequest(sha256=t.payload_sha256)],
    ),
    Method(
        "Fleet",
        "GetRun",
        "unary_unary",
        "fleet",
        lambda t: [run_pb2.GetRunRequest(run_id=t.run_id)],
    ),
    Method(
        "Fleet",
        "PullBundle",
        "unary_stream",
        "fleet",
        lambda t: [fleet_pb2.PullBundleRequest(sha256=t.bundle_sha256)],
    ),
    Method("Control", "SubmitRun", "stream_unary", "control", _submission),
    Method(
        "Control", "ListRuns", "unary_unary", "control", lambda t: [control_pb2.ListRunsRequest()]
    ),
    Method(
        "Control",
        "GetRun",
        "unary_unary",
        "control",
        lambda t: [run_pb2.GetRunRequest(run_id=t.run_id)],
    ),
    Method(
        "Control",
        "StopRun",
        "unary_unary",
        "control",
        lambda t: [control_pb2.StopRunRequest(run_id=t.run_id, reason="fuzzed")],
    ),
    Method(
        "Control",
        "StreamEvents",
        "unary_stream",
        "control",
        lambda t: [control_pb2.StreamEventsRequest(run_id=t.run_id, follow=True)],
    ),
    Method(
        "Control",
        "ListNodes",
        "unary_unary",
        "control",
        lambda t: [control_pb2.ListNodesRequest()],
    ),
    Method(
        "Control",
        "GetRunResult",
        "unary_unary",
        "control",
        lambda t: [control_pb2.GetRunResultRequest(run_id=t.run_id)],
    ),
    Method(
        "RunArtifacts",
        "PullArrays",
        "unary_stream",
        "control",
        lambda t: [fleet_pb2.PullArraysRequest(sha256=t.payload_sha256)],
    ),
]


def valid_metadata(method: Method, target: Target) -> tuple[tuple[str, str], ...]:
    """What a well-behaved caller sends: a node's token on Fleet calls."""
    return bearer_metadata(target.token) if method.port == "fleet" else ()


# -- strategies ---------------------------------------------------------------------------


def raw_requests(method: Method) -> st.SearchStrategy[list[bytes]]:
    """Random bytes as the request, or as each item of a short request stream."""
    item = st.one_of(st.binary(max_size=256), st.sampled_from([b"", b"\xff" * 1024]))
    if method.streams_requests:
        return st.lists(item, max_size=5)
    return item.map(lambda request: [request])


_EDITS = ("flip", "insert", "delete", "duplicate", "truncate")


@st.composite
def edited(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` with a few bytes flipped, inserted, deleted or duplicated, or truncated."""
    edits = draw(
        st.lists(
            st.tuples(st.sampled_from(_EDITS), st.integers(0, 1 << 20), st.binary(max_size=8)),
            min_size=1,
            max_size=4,
        )
    )
    edited_data = bytearray(data)
    for edit, where, extra in edits:
        at = where % (len(edited_data) + 1)
        if edit == "flip" and edited_data:
            at %= len(edited_data)
            edited_data[at] ^= 1 << (where % 8)
        elif edit == "insert":
            edited_data[at:at] = extra or b"\x00"
        elif edit == "delete":
            del edited_data[at : at + 1 + where % 16]
        elif edit == "duplicate":
            edited_data[at:at] = edited_data[at : at + 1 + where % 64]
        elif edit == "truncate":
            del edited_data[at:]
    return bytes(edited_data)


_STRINGS = (
    "",
    "z" * 64,  # sha256-long, not hex
    "A" * 64,  # hex, upper case
    "0" * 63,
    "f" * 65,
    "../" * 8 + "etc/passwd",
    "é" * 32,
    "\x00",
    "-1",
    "18446744073709551616",
    "².secret",  # a digit to str.isdigit(), not to int()
    "1" * 400 + ".secret",
)
_UINTS = (0, 1, 2, 2**31, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1)
_INTS = (0, -1, 1, -(2**31), 2**31 - 1, -(2**63), 2**63 - 1)
_FLOATS = (0.0, -0.0, -1.0, 1e-300, 5e-324, 1e308, math.inf, -math.inf, math.nan)


def _string(draw: st.DrawFn, target: Target) -> str:
    return draw(
        st.one_of(
            st.sampled_from(_STRINGS),
            st.sampled_from(target.known_strings),
            st.text(max_size=64),
            st.sampled_from(SIZES).map(lambda n: "a" * n),
        )
    )


_Field = descriptor.FieldDescriptor


def _scalar(draw: st.DrawFn, field: _Field, target: Target, small: bool) -> Any:
    kind = field.type
    if kind == _Field.TYPE_STRING:
        return draw(st.text(max_size=8)) if small else _string(draw, target)
    if kind == _Field.TYPE_BYTES:
        sizes = (0, 1, 64) if small else SIZES
        return draw(st.one_of(st.binary(max_size=64), st.sampled_from(sizes).map(bytes)))
    if kind == _Field.TYPE_BOOL:
        return draw(st.booleans())
    if kind == _Field.TYPE_DOUBLE or kind == _Field.TYPE_FLOAT:
        return draw(st.sampled_from(_FLOATS))
    if kind == _Field.TYPE_ENUM:
        return draw(st.sampled_from((0, 1, 5, 99, -1, 2**31 - 1)))
    if kind in (_Field.TYPE_UINT64, _Field.TYPE_FIXED64):
        return draw(st.sampled_from(_UINTS + tuple(target.known_ints)))
    if kind in (_Field.TYPE_UINT32, _Field.TYPE_FIXED32):
        return draw(st.sampled_from((0, 1, 2**31, 2**32 - 1)))
    if kind in (_Field.TYPE_INT32, _Field.TYPE_SINT32, _Field.TYPE_SFIXED32):
        return draw(st.sampled_from((0, -1, -(2**31), 2**31 - 1)))
    return draw(st.sampled_from(_INTS + tuple(target.known_ints)))


def _set_extreme(
    draw: st.DrawFn, message: Proto, target: Target, depth: int, *, small: bool = False
) -> None:
    """Set a few fields of ``message`` to extreme values; ``small`` keeps strings and
    counts small (in an item that a repeated field holds thousands of)."""
    fields = list(message.DESCRIPTOR.fields)
    if not fields:
        return
    chosen = draw(st.lists(st.sampled_from(fields), min_size=1, max_size=3, unique=True))
    for field in chosen:
        is_message = field.type == _Field.TYPE_MESSAGE
        if field.is_repeated:
            count = draw(st.sampled_from(COUNTS[:3] if small else COUNTS))
            container = getattr(message, field.name)
            del container[:]
            many = small or count > 2
            if is_message:
                item = container.add()
                if depth > 0:
                    _set_extreme(draw, item, target, depth - 1, small=many)
                for _ in range(count - 1):
                    container.add().CopyFrom(item)
            else:
                container.extend([_scalar(draw, field, target, small=many)] * count)
        elif is_message:
            child = getattr(message, field.name)
            child.SetInParent()
            if depth > 0:
                _set_extreme(draw, child, target, depth - 1, small=small)
        else:
            setattr(message, field.name, _scalar(draw, field, target, small=small))


@st.composite
def extreme(draw: st.DrawFn, request: Proto, target: Target) -> bytes:
    """``request`` with a few of its fields (nested ones too) set to extreme values:
    huge strings and repeated fields, boundary integers, NaN, unknown enum values, hashes
    that are not hex, ids of nothing, offsets past the end."""
    copy = type(request)()
    copy.CopyFrom(request)
    _set_extreme(draw, copy, target, depth=draw(st.integers(0, 4)))
    return copy.SerializeToString()


@st.composite
def mutated_requests(draw: st.DrawFn, method: Method, target: Target) -> list[bytes]:
    """A valid request, byte-edited or with extreme fields; for a request stream, its
    items so broken, dropped, repeated or reordered."""
    items = [request.SerializeToString() for request in method.valid(target)]
    valid = method.valid(target)
    broken = []
    for request, data in zip(valid, items, strict=True):
        how = draw(st.sampled_from(("keep", "edit", "extreme")))
        if how == "edit":
            data = draw(edited(data))
        elif how == "extreme":
            data = draw(extreme(request, target))
        broken.append(data)
    if method.streams_requests and broken:
        order = draw(st.lists(st.integers(0, len(broken) - 1), max_size=len(broken) + 2))
        broken = draw(st.sampled_from((broken, [broken[i] for i in order])))
    elif not method.streams_requests and broken == items:
        broken = [draw(edited(items[0]))]  # a unary request always changes
    return broken


_SCHEMES = ("Bearer ", "bearer ", "BEARER ", "Basic ", "", "Bearer", "Token ")


@st.composite
def metadata(draw: st.DrawFn, target: Target) -> list[tuple[str, str | bytes]]:
    """Call metadata a careless or hostile caller sends: tokens that are empty, huge,
    malformed, another node's or of no node, under a wrong scheme, or several of them."""
    token = draw(
        st.one_of(
            st.sampled_from(
                (
                    target.token,
                    target.other_token,
                    f"{target.node_id}.wrong-secret",
                    f"{target.other_node_id}.{target.token.partition('.')[2]}",
                    f"{2**64}.secret",
                    "-1.secret",
                    "0.",
                    ".secret",
                    "1",
                    "",
                    " ",
                )
            ),
            st.sampled_from((100, 4000, 7000, 20_000)).map(lambda n: "1." + "a" * n),
            st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80),
        )
    )
    entries: list[tuple[str, str | bytes]] = []
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(("authorization", "authorization", "x-corolla-node", "auth")))
        entries.append((key, draw(st.sampled_from(_SCHEMES)) + token))
    if draw(st.booleans()):
        entries.append(("authorization-bin", draw(st.binary(max_size=64))))
    return entries


# -- calls ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How a call ended: ``code`` None for success (or a response stream the caller
    cancelled after reading enough of it)."""

    code: grpc.StatusCode | None
    details: str
    client_side: bool = False  # refused by the gRPC client before it reached the link
    #: Bytes of the metadata sent (see METADATA_ACCEPTED).
    metadata_bytes: int = 0
    #: Reasons of errors the responses carried.
    reasons: tuple[str, ...] = ()


class _CutShort(Exception):
    """Raised by a request stream to stop midway: gRPC cancels the call."""


def _requests(items: Sequence[bytes], cut: bool) -> Iterator[bytes]:
    yield from items
    if cut:
        raise _CutShort


def call(
    target: Target,
    method: Method,
    requests: Sequence[bytes],
    metadata: Sequence[tuple[str, str | bytes]],
    *,
    cut: bool = False,
) -> Outcome:
    """Send ``requests`` (serialized already) to ``method`` with ``metadata``; a request
    stream ends early with the call cancelled if ``cut``."""
    channel = target.channel(method.port)
    timeout = WAITING_CALL_S if method.waits else CALL_S
    options: dict[str, Any] = {"timeout": timeout, "metadata": list(metadata)}
    sent = sum(len(key) + len(value) for key, value in metadata)
    factory = getattr(channel, method.kind)
    stub = factory(method.path, request_serializer=None, response_deserializer=None)
    first = requests[0] if requests else b""
    reasons: list[str] = []
    try:
        if method.kind == "unary_unary":
            stub(first, **options)
        elif method.kind == "stream_unary":
            stub(_requests(requests, cut), **options)
        else:
            responses = stub(
                _requests(requests, cut) if method.streams_requests else first, **options
            )
            for count, response in enumerate(responses, start=1):
                if method.reasons is not None:
                    reasons += method.reasons(response)
                if count >= MAX_RESPONSES:
                    responses.cancel()
                    break
    except grpc.RpcError as exc:
        code, details = exc.code(), exc.details() or ""  # type: ignore[attr-defined]
        client_side = details in ("Invalid metadata",) or details.startswith(
            "Exception iterating requests"
        )
        if code is grpc.StatusCode.CANCELLED and (cut or "Locally cancelled" in details):
            client_side = True
        return Outcome(code, details, client_side, sent, tuple(reasons))
    return Outcome(None, "", False, sent, tuple(reasons))


def _private_paths(target: Target) -> list[str]:
    paths = sysconfig.get_paths()
    return [
        str(target.state_dir),
        str(Path(corolla.__file__).parent),
        paths["stdlib"],
        paths["purelib"],
    ]


def check_outcome(target: Target, method: Method, outcome: Outcome) -> None:
    """What every call of the link must end with, whatever it sent.

    Raises
    ------
    AssertionError
        If the link died, the call hung, or its details leak a traceback or a path of the
        link's machine, run long, or tell of an error the link did not expect.
    """
    status = "OK" if outcome.code is None else outcome.code.name
    key = (str(method), "client" if outcome.client_side else status)
    target.outcomes[key] += 1
    target.samples.setdefault(key, outcome.details[:120])
    if target.outcomes.total() % RSS_EVERY == 0:
        target.rss_trace.append(psutil.Process(target.process.pid).memory_info().rss / 2**20)
    assert target.process.poll() is None, f"the link exited ({target.process.returncode})"
    if outcome.client_side:
        return
    for details in (outcome.details, *outcome.reasons):
        for marker in TRACEBACK_MARKERS:
            assert marker not in details, f"{method}: a traceback: {details[:2000]}"
        for path in _private_paths(target):
            assert path not in details, f"{method}: the details name {path}: {details[:2000]}"
        assert len(details) <= MAX_DETAILS, f"{method}: {len(details)} chars: {details[:300]}"
    details = outcome.details
    if outcome.code is grpc.StatusCode.DEADLINE_EXCEEDED:
        assert method.waits, f"{method} did not answer within {CALL_S} s"
    if outcome.code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        # Only metadata over gRPC's limit may be refused so; any other such status is the
        # link's answer grown past what the caller accepts (details quoting the request).
        assert outcome.metadata_bytes > METADATA_ACCEPTED, f"{method}: {details}"
    assert outcome.code not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), (
        f"{method}: an error the link did not expect: {outcome.code}: {details}"
    )
    new_log = target.read_log()
    assert "Traceback" not in new_log, f"{method}: the link logged a traceback: {new_log}"
