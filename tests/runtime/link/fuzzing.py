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

On a link with ``auth`` on, :func:`as_sent` gives every call what a well-behaved caller
adds: an admin's token on the control port, and on the Fleet a signature by the node's
registered key over the request as the link parses it (each reply of a ``SendReplies``
stream signed too), so that broken requests reach the handlers behind the checks.
:func:`credentials` breaks what :func:`as_sent` adds instead: tokens that are garbage,
expired, forged, of another federation or unsigned; signatures, timestamps, nonces and
node keys that are malformed, replayed or another's. The link must refuse those calls.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import itertools
import math
import subprocess
import sysconfig
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import jwt
import numpy as np
import psutil
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf import descriptor, descriptor_pool, message_factory
from google.protobuf.message import DecodeError
from google.protobuf.message import Message as Proto
from hypothesis import strategies as st

import corolla
from corolla.core import Message, RecordDict
from corolla.runtime.link._access import REQUIRED_ROLES
from corolla.transport import (
    accounts_pb2,
    bearer_metadata,
    chunk_messages,
    control_pb2,
    fleet_pb2,
    run_pb2,
    signed_reply_body,
    user_config_to_proto,
)
from corolla.trust import (
    NONCE_KEY,
    PUBLIC_KEY_KEY,
    REPLY_ITEM_METHOD,
    SIGNATURE_KEY,
    TIMESTAMP_KEY,
    NodeKey,
    Role,
    request_body,
    sign_request,
    signed_text,
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
#: The accounts a link with auth has for the fuzz: its admin and a viewer whose tokens
#: the fuzz uses (and whose names it never draws), and a viewer the Accounts calls change.
ADMIN, WATCHER, VIEWER = "root", "watcher", "fuzzed"
PASSWORD = "fuzzed-password"
#: A second account the Accounts calls add and remove.
ADDED = "fuzzed-2"
#: The statuses a refused call may end with.
REFUSED = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)

Entries = list[tuple[str, str | bytes]]
_Change = Callable[[Entries], Entries]


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
    #: Whether the link requires accounts and signed requests (``corolla link --auth``).
    auth: bool = False
    #: With auth: the federation, an admin's and a viewer's tokens, the key the link
    #: signs its tokens with (to forge some), each node's registered key, registered keys
    #: to register nodes with (in turn: a key may register a few times a minute), and
    #: a registered key the Accounts calls remove and add again.
    federation: str = ""
    admin_token: str = ""
    viewer_token: str = ""
    token_key: bytes = b""
    node_keys: dict[int, NodeKey] = dataclasses.field(default_factory=dict)
    registering_keys: list[NodeKey] = dataclasses.field(default_factory=list)
    spare_key: str = ""
    #: How much of the link's log was read (see :meth:`read_log`).
    log_read: int = 0
    #: (method, status code name) -> calls, for the report of a run.
    outcomes: collections.Counter[tuple[str, str]] = dataclasses.field(
        default_factory=collections.Counter
    )
    #: (method, status code name) -> the first details seen, for the report.
    samples: dict[tuple[str, str], str] = dataclasses.field(default_factory=dict)
    #: What was wrong with the credentials of calls (see :func:`credentials`) -> calls.
    faults: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    #: The link's RSS in MiB every RSS_EVERY calls, for the report.
    rss_trace: list[float] = dataclasses.field(default_factory=list)
    _turns: Iterator[int] = dataclasses.field(default_factory=itertools.count)

    def registering_key(self) -> NodeKey:
        """The next of :attr:`registering_keys`."""
        return self.registering_keys[next(self._turns) % len(self.registering_keys)]

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
        known = [self.bundle_sha256, self.payload_sha256, self.garbage_bundle_sha256, self.token]
        return [*known, VIEWER, ADDED, self.spare_key] if self.auth else known

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
    def request_type(self) -> type[Proto]:
        pool = descriptor_pool.Default()
        found = pool.FindMethodByName(f"corolla.v1.{self.service}.{self.name}")
        return message_factory.GetMessageClass(found.input_type)

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


def _accounts(name: str, request: Proto) -> Method:
    return Method("Accounts", name, "unary_unary", "control", lambda t: [request])


METHODS += [
    _accounts("Login", accounts_pb2.LoginRequest(name=VIEWER, password=PASSWORD)),
    _accounts("WhoAmI", accounts_pb2.WhoAmIRequest()),
    _accounts("ListAccounts", accounts_pb2.ListAccountsRequest()),
    _accounts(
        "AddAccount", accounts_pb2.AddAccountRequest(name=ADDED, role="viewer", password=PASSWORD)
    ),
    _accounts("RemoveAccount", accounts_pb2.RemoveAccountRequest(name=ADDED)),
    _accounts("SetRole", accounts_pb2.SetRoleRequest(name=VIEWER, role="operator")),
    _accounts("SetPassword", accounts_pb2.SetPasswordRequest(name=VIEWER, new_password=PASSWORD)),
    _accounts("ListNodeKeys", accounts_pb2.ListNodeKeysRequest()),
    Method(
        "Accounts",
        "AddNodeKey",
        "unary_unary",
        "control",
        lambda t: [accounts_pb2.AddNodeKeyRequest(public_key=t.spare_key, name="spare")],
    ),
    Method(
        "Accounts",
        "RemoveNodeKey",
        "unary_unary",
        "control",
        lambda t: [accounts_pb2.RemoveNodeKeyRequest(public_key=t.spare_key)],
    ),
]


def valid_metadata(method: Method, target: Target) -> tuple[tuple[str, str], ...]:
    """What a well-behaved caller sends on a link without auth: a node's token on Fleet
    calls (see :func:`as_sent` for a link with auth)."""
    return bearer_metadata(target.token) if method.port == "fleet" else ()


# -- signing ------------------------------------------------------------------------------


def parsed_body(method: Method, data: bytes) -> bytes:
    """What the link checks a signature over: ``data`` as it parses it, serialized
    deterministically (``data`` itself where it does not parse: refused before)."""
    try:
        return request_body(method.request_type.FromString(data))
    except DecodeError:
        return data


def _signed_replies(target: Target, items: Sequence[bytes], key: NodeKey) -> list[bytes]:
    """The replies of a SendReplies stream, each that parses signed with ``key``."""
    signed = []
    for data in items:
        try:
            item = fleet_pb2.SendReplyRequest.FromString(data)
        except DecodeError:
            signed.append(data)
            continue
        body = signed_reply_body(item.message)
        signature = sign_request(key, REPLY_ITEM_METHOD, body)
        item.signature.timestamp = signature.timestamp
        item.signature.nonce = signature.nonce
        item.signature.signature = signature.signature
        signed.append(item.SerializeToString(deterministic=True))
    return signed


def _signed(
    method: Method, target: Target, requests: Sequence[bytes]
) -> tuple[list[bytes], Entries, NodeKey]:
    """``requests`` and the metadata of a call signed as a registered node signs it: its
    token and signature, or (RegisterNode) a registered key and a signature by it."""
    body = parsed_body(method, requests[0]) if requests else b""
    if method.streams_requests:
        body = b""
    if method.name == "RegisterNode":
        key = target.registering_key()
        entries: Entries = [(PUBLIC_KEY_KEY, key.public_text)]
    else:
        key = target.node_keys[target.node_id]
        entries = list(bearer_metadata(target.token))
    entries += sign_request(key, method.path, body).metadata()
    items = list(requests)
    if method.name == "SendReplies":
        items = _signed_replies(target, items, key)
    return items, entries, key


def as_sent(
    method: Method, target: Target, requests: Sequence[bytes]
) -> tuple[list[bytes], Entries]:
    """``requests`` and the metadata a well-behaved caller sends them with: on a link
    without auth, a node's token on Fleet calls; with auth, an admin's token on the
    control port, and on the Fleet the node's token and signatures by its key."""
    if not target.auth:
        return list(requests), list(valid_metadata(method, target))
    if method.port == "control":
        return list(requests), list(bearer_metadata(target.admin_token))
    items, entries, _ = _signed(method, target, requests)
    return items, entries


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
def metadata(draw: st.DrawFn, target: Target) -> Entries:
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
    entries: Entries = []
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


# -- broken credentials (a link with auth) ----------------------------------------------


@dataclasses.dataclass(frozen=True)
class Credentials:
    """A call's requests and metadata with what makes it invalid, if anything."""

    requests: list[bytes]
    metadata: Entries
    #: What is wrong with them, for the report; empty if nothing surely is.
    faults: tuple[str, ...] = ()
    #: The replies of a SendReplies stream are each refused (their signatures broken).
    items_refused: bool = False
    #: Send the call twice: the second is a replay.
    replay: bool = False

    @property
    def refused(self) -> bool:
        """Whether the link must refuse the call itself."""
        return bool(self.faults) and not self.items_refused


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")


def _forged(target: Target, key: bytes | None = None, **changes: Any) -> str:
    """A token with the link's claims for its admin, ``changes`` made, signed with
    ``key`` (the link's own by default)."""
    now = time.time()
    claims: dict[str, Any] = {
        "sub": ADMIN,
        "role": "admin",
        "fed": target.federation,
        "iat": int(now),
        "exp": now + 600,
        "jti": "fuzzed",
    }
    for name, value in changes.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return jwt.encode(claims, target.token_key if key is None else key, algorithm="HS256")


def _flipped_signature(token: str, where: int) -> str:
    """``token`` with one byte of its signature flipped (not a character: the last one
    of a base64 text may carry bits that decode to nothing)."""
    head, _, signature = token.rpartition(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[where % len(raw)] ^= 1 << (where % 8)
    return head + "." + _b64(bytes(raw)).rstrip("=")


@st.composite
def bad_tokens(draw: st.DrawFn, target: Target) -> tuple[str, str]:
    """An account token the link must refuse, and what is wrong with it."""
    valid = target.admin_token
    now = time.time()
    choices: list[tuple[str, Callable[[], str]]] = [
        ("garbage", lambda: draw(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E)))),
        ("huge", lambda: "a." * draw(st.sampled_from((100, 3000)))),
        ("expired", lambda: _forged(target, exp=now - 1, iat=int(now) - 3600)),
        ("another federation", lambda: _forged(target, fed="another-" + target.federation)),
        ("another link's", lambda: _forged(target, key=b"k" * 32)),
        (
            "unsigned (alg none)",
            lambda: jwt.encode(
                jwt.decode(valid, options={"verify_signature": False}), None, algorithm="none"
            ),
        ),
        # An algorithm the link does not accept (with a key as long as it asks for).
        ("HS512", lambda: jwt.encode({"sub": ADMIN}, target.token_key * 2, algorithm="HS512")),
        ("truncated", lambda: valid[: draw(st.integers(0, len(valid) - 1))]),
        ("flipped signature", lambda: _flipped_signature(valid, draw(st.integers(0, 255)))),
        ("edited claims", lambda: _edited_claims(valid)),
        ("no such account", lambda: _forged(target, sub="ghost")),
        ("unknown role", lambda: _forged(target, role="root")),
        ("no expiry", lambda: _forged(target, exp=None)),
        ("time out of range", lambda: _forged(target, exp=draw(st.sampled_from(_BAD_TIMES)))),
        ("issued out of range", lambda: _forged(target, iat=draw(st.sampled_from(_BAD_TIMES)))),
    ]
    fault, make = draw(st.sampled_from(choices))
    return make(), fault


_BAD_TIMES = (-1e300, 10**400, -(10**400), math.nan, math.inf, "soon", [1], {"a": 1}, True)


def _edited_claims(token: str) -> str:
    head, claims, signature = token.split(".")
    payload = base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4))
    edited = payload.replace(b'"admin"', b'"viewe"') if b'"admin"' in payload else payload + b" "
    return ".".join((head, _b64(edited).rstrip("="), signature))


def _control_credentials(
    draw: st.DrawFn, method: Method, target: Target, requests: list[bytes]
) -> Credentials:
    kind = draw(st.sampled_from(("bad", "bad", "viewer", "valid")))
    faults: tuple[str, ...] = ()
    if kind == "bad":
        token, fault = draw(bad_tokens(target))
        faults = (f"token: {fault}",)
    elif kind == "viewer":
        token = target.viewer_token
        required = REQUIRED_ROLES.get(method.path)
        if required is not None and not Role.VIEWER.allows(required):
            faults = ("token: a viewer's",)
    else:
        token = target.admin_token
    scheme = draw(st.sampled_from(_SCHEMES))
    entries: Entries = [("authorization", scheme + token)]
    if draw(st.booleans()):
        entries.append(("authorization-bin", draw(st.binary(max_size=64))))
    if REQUIRED_ROLES.get(method.path, Role.ADMIN) is None:
        faults = ()  # Login needs no token
    return Credentials(requests, entries, faults)


#: Timestamps a signed request must not carry, signed as they are.
_BAD_STAMPS = (
    "nan",
    "NaN",
    "inf",
    "-inf",
    "1e400",
    "-1",
    "0",
    "",
    "abc",
    "0x1p30",
    "9" * 200,
    "1" + "0" * 127,
)


def _replace(entries: Entries, key: str, value: str | bytes | None) -> Entries:
    kept = [(k, v) for k, v in entries if k != key]
    return kept if value is None else [*kept, (key, value)]


def _value(entries: Sequence[tuple[str, str | bytes]], key: str) -> str:
    return next(str(v) for k, v in entries if k == key)


@st.composite
def _fleet_fault(
    draw: st.DrawFn, method: Method, target: Target, body: bytes, key: NodeKey
) -> tuple[str, Callable[[Entries], Entries]]:
    """One way to break a signed Fleet call's metadata, and its name."""
    other = target.node_keys[target.other_node_id]
    stamp = draw(st.sampled_from(_BAD_STAMPS))
    nonce = "n" * draw(st.sampled_from((129, 1000, 6000)))
    where = draw(st.integers(0, 255))
    another = "/corolla.v1.Fleet/" + ("GetRun" if method.name == "Heartbeat" else "Heartbeat")

    def resigned(
        timestamp: str | None = None,
        nonce: str | None = None,
        signer: NodeKey = key,
        signed_method: str = method.path,
        signed_body: bytes = body,
    ) -> _Change:
        """Signed anew, as told: a valid signature over what the link must refuse."""

        def change(entries: Entries) -> Entries:
            fresh = sign_request(signer, signed_method, signed_body)
            stamp = fresh.timestamp if timestamp is None else timestamp
            once = fresh.nonce if nonce is None else nonce
            raw = signer.sign(signed_text(signed_method, stamp, once, signed_body))
            for name, value in (
                (TIMESTAMP_KEY, stamp),
                (NONCE_KEY, once),
                (SIGNATURE_KEY, _b64(raw)),
            ):
                entries = _replace(entries, name, value)
            return entries

        return change

    def set_entry(name: str, value: str | bytes | None) -> Any:
        return lambda entries: _replace(entries, name, value)

    def flip(entries: Entries) -> Entries:
        try:
            raw = bytearray(base64.urlsafe_b64decode(_value(entries, SIGNATURE_KEY)))
        except (StopIteration, ValueError):
            raw = bytearray()
        if not raw:  # no signature to flip: broken already
            return _replace(entries, SIGNATURE_KEY, "")
        raw[where % len(raw)] ^= 1 << (where % 8)
        return _replace(entries, SIGNATURE_KEY, _b64(bytes(raw)))

    choices = [
        ("timestamp signed as " + repr(stamp[:12]), resigned(timestamp=stamp)),
        ("signed an hour ago", resigned(timestamp=f"{time.time() - 3600:.6f}")),
        ("signed an hour ahead", resigned(timestamp=f"{time.time() + 3600:.6f}")),
        ("timestamp changed after signing", set_entry(TIMESTAMP_KEY, f"{time.time() + 1:.6f}")),
        ("nonce too long", resigned(nonce=nonce)),
        ("nonce changed after signing", set_entry(NONCE_KEY, "changed")),
        ("no timestamp", set_entry(TIMESTAMP_KEY, None)),
        ("no nonce", set_entry(NONCE_KEY, None)),
        ("no signature", set_entry(SIGNATURE_KEY, None)),
        ("signature empty", set_entry(SIGNATURE_KEY, "")),
        ("signature not base64", set_entry(SIGNATURE_KEY, "!!!!" * draw(st.integers(1, 30)))),
        (
            "signature of a wrong length",
            set_entry(SIGNATURE_KEY, _b64(bytes(draw(st.sampled_from((1, 63, 65, 1000)))))),
        ),
        ("signature byte flipped", flip),
        ("signed by another node's key", resigned(signer=other)),
        ("signed for another method", resigned(signed_method=another)),
        ("signed over other bytes", resigned(signed_body=body + b"\x00")),
        (
            "signature in binary metadata only",
            lambda e: [*_replace(e, SIGNATURE_KEY, None), (SIGNATURE_KEY + "-bin", b"\x00" * 64)],
        ),
        ("a garbage signature after the valid one", lambda e: [*e, (SIGNATURE_KEY, "AAAA")]),
    ]
    if method.name == "RegisterNode":
        fresh = NodeKey(Ed25519PrivateKey.generate())
        choices += [
            ("no node key", set_entry(PUBLIC_KEY_KEY, None)),
            ("node key malformed", set_entry(PUBLIC_KEY_KEY, draw(st.sampled_from(_BAD_KEYS)))),
            ("node key another registered one", set_entry(PUBLIC_KEY_KEY, other.public_text)),
            (
                "node key unregistered, signed by it",
                lambda e: resigned(signer=fresh)(_replace(e, PUBLIC_KEY_KEY, fresh.public_text)),
            ),
        ]
    else:
        token = draw(
            st.sampled_from((f"{target.node_id}.wrong-secret", "1", "", f"{2**64}.x", "-1.x"))
        )
        choices += [
            ("another node's token", set_entry("authorization", "Bearer " + target.other_token)),
            ("a token of no node", set_entry("authorization", "Bearer " + token)),
            ("no token", set_entry("authorization", None)),
        ]
    return draw(st.sampled_from(choices))


_BAD_KEYS = (
    "",
    "ed25519:",
    "ed25519:" + "A" * 43,
    "ed25519:" + "!" * 43,
    "ed25519:" + "A" * 44 + "==",
    "ed25519:" + "a" * 6000,
    "rsa:AAAA",
    "ED25519:" + "A" * 43,
    "ed25519:" + _b64(b"\xff" * 32),
)


def _broken_replies(
    draw: st.DrawFn, target: Target, items: list[bytes], key: NodeKey
) -> tuple[list[bytes], str]:
    """The replies of a SendReplies stream, every one's signature broken one way."""
    how = draw(st.sampled_from(("unsigned", "flipped", "another key", "as a call", "replayed")))
    broken = []
    first: fleet_pb2.SendReplyRequest | None = None
    for data in items:
        item = fleet_pb2.SendReplyRequest.FromString(data)
        body = signed_reply_body(item.message)
        signer = target.node_keys[target.other_node_id] if how == "another key" else key
        method = "/corolla.v1.Fleet/SendReplies" if how == "as a call" else REPLY_ITEM_METHOD
        signature = sign_request(signer, method, body)
        if how == "unsigned":
            item.ClearField("signature")
        elif how == "replayed" and first is not None:
            item.signature.CopyFrom(first.signature)  # the replies are alike: a replay
        else:
            item.signature.timestamp = signature.timestamp
            item.signature.nonce = signature.nonce
            item.signature.signature = signature.signature
            if how == "flipped":
                raw = bytearray(base64.urlsafe_b64decode(signature.signature))
                raw[draw(st.integers(0, 63))] ^= 1
                item.signature.signature = _b64(bytes(raw))
        first = first or item
        broken.append(item.SerializeToString(deterministic=True))
    return broken, f"replies {how}"


def _fleet_credentials(
    draw: st.DrawFn, method: Method, target: Target, requests: list[bytes]
) -> Credentials:
    body = b"" if method.streams_requests else parsed_body(method, requests[0])
    items, entries, key = _signed(method, target, requests)
    if draw(st.booleans()):  # valid, and sent again: a replay
        return Credentials(items, entries, replay=True)
    if method.name == "SendReplies" and draw(st.booleans()):
        broken, fault = _broken_replies(draw, target, list(requests), key)
        return Credentials(broken, entries, (fault,), items_refused=True)
    faults: list[str] = []
    for _ in range(draw(st.integers(1, 2))):
        fault, change = draw(_fleet_fault(method, target, body, key))
        if fault not in faults:  # the same twice may undo itself (a bit flipped back)
            entries = change(entries)
            faults.append(fault)
    return Credentials(items, entries, tuple(faults))


@st.composite
def credentials(draw: st.DrawFn, method: Method, target: Target) -> Credentials:
    """A valid request with what a careless or hostile caller sends along: on a link
    without auth, garbage metadata (:func:`metadata`); with auth, tokens or signatures
    that are broken (:attr:`Credentials.faults` says how), or valid ones (on the Fleet,
    sent twice: the second a replay)."""
    requests = [r.SerializeToString() for r in method.valid(target)]
    if not target.auth:
        return Credentials(requests, draw(metadata(target)))
    if method.port == "control":
        return _control_credentials(draw, method, target, requests)
    return _fleet_credentials(draw, method, target, requests)


def check_refused(method: Method, credentials: Credentials, outcome: Outcome) -> None:
    """A call with broken credentials ends refused (its replies each, on a stream of
    replies whose signatures were broken).

    Raises
    ------
    AssertionError
        If the link accepted what it must not.
    """
    if outcome.client_side or (
        outcome.code is grpc.StatusCode.RESOURCE_EXHAUSTED
        and outcome.metadata_bytes > METADATA_ACCEPTED
    ):
        return
    if credentials.items_refused:
        if outcome.code is None:
            count = len(credentials.requests)
            assert len(outcome.reasons) == count, (method, credentials.faults, outcome)
            replayed = credentials.faults == ("replies replayed",)
            refusals = outcome.reasons[-1:] if replayed else outcome.reasons
            for reason in refusals:
                assert any(w in reason for w in ("signature", "signed", "replayed")), reason
        return
    if credentials.refused:
        assert outcome.code in REFUSED, f"{method} {credentials.faults}: {outcome}"


def check_replay_refused(method: Method, outcome: Outcome) -> None:
    """A signed call sent a second time, unchanged, is refused as a replay.

    Raises
    ------
    AssertionError
        If the link accepted it.
    """
    if outcome.client_side:
        return
    assert outcome.code is grpc.StatusCode.UNAUTHENTICATED, f"{method}: a replay: {outcome}"
    assert "replayed" in outcome.details, outcome.details
