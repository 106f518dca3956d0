"""A node signs every Fleet request with its key (see :mod:`corolla.trust`'s signed
requests): a client interceptor on the node's channel, so that no call goes out unsigned.

A call with one request is signed over the request's deterministic serialization. A
stream of requests is signed at its opening (over no bytes); the replies written on a
``SendReplies`` stream are signed one by one, each in its ``signature`` field (over its
metadata and its content's hash: see ``corolla.transport.signed_reply_body``), and the
chunks of ``PushArrays`` need no signature: the link checks each array against its hash,
which the signed reply names. A link that does not require signatures ignores them.

Once the node registered with a session key (see ``corolla.trust``'s session keys and
:meth:`RequestSigning.use_session`), the same text is authenticated with the session
key's HMAC instead of a signature; RegisterNode itself is always signed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc

from corolla.transport import fleet_pb2, signed_reply_body
from corolla.trust import (
    PUBLIC_KEY_KEY,
    REPLY_ITEM_METHOD,
    NodeKey,
    RequestSignature,
    SessionKey,
    request_body,
    sign_request,
)

__all__ = ["RequestSigning"]

_REGISTER = "/corolla.v1.Fleet/RegisterNode"
_SEND_REPLIES = "/corolla.v1.Fleet/SendReplies"


class _Details(grpc.ClientCallDetails):
    def __init__(
        self, details: grpc.ClientCallDetails, metadata: tuple[tuple[str, str | bytes], ...]
    ) -> None:
        self.method = details.method
        self.timeout = details.timeout
        self.metadata = metadata
        self.credentials = details.credentials
        self.wait_for_ready = getattr(details, "wait_for_ready", None)
        self.compression = getattr(details, "compression", None)


class RequestSigning(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Signs each call made on a channel with ``key`` (or authenticates it with the
    session key in use)."""

    def __init__(self, key: NodeKey) -> None:
        self._key = key
        self._session: SessionKey | None = None

    def use_session(self, session: SessionKey | None) -> None:
        """Authenticate the calls from now on with ``session`` (None: sign them)."""
        self._session = session

    def _sign(self, method: str, body: bytes) -> RequestSignature:
        session = self._session
        if session is None or method == _REGISTER:
            return sign_request(self._key, method, body)
        return session.sign(method, body)

    def _details(self, details: grpc.ClientCallDetails, body: bytes) -> _Details:
        method = str(details.method)
        metadata = (*(details.metadata or ()), *self._sign(method, body).metadata())
        if method == _REGISTER:
            metadata += ((PUBLIC_KEY_KEY, self._key.public_text),)
        return _Details(details, metadata)

    def _signed_items(self, method: str, requests: Iterator[Any]) -> Iterator[Any]:
        for request in requests:
            if method == _SEND_REPLIES and isinstance(request, fleet_pb2.SendReplyRequest):
                signed = self._sign(REPLY_ITEM_METHOD, signed_reply_body(request.message))
                item = request.signature
                item.timestamp = signed.timestamp
                item.nonce = signed.nonce
                if signed.mac:
                    item.mac = signed.signature
                else:
                    item.signature = signed.signature
            yield request

    def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: grpc.ClientCallDetails, request: Any
    ) -> Any:
        return continuation(self._details(details, request_body(request)), request)

    def intercept_unary_stream(
        self, continuation: Callable[..., Any], details: grpc.ClientCallDetails, request: Any
    ) -> Any:
        return continuation(self._details(details, request_body(request)), request)

    def intercept_stream_unary(
        self,
        continuation: Callable[..., Any],
        details: grpc.ClientCallDetails,
        request_iterator: Iterator[Any],
    ) -> Any:
        return continuation(self._details(details, b""), request_iterator)

    def intercept_stream_stream(
        self,
        continuation: Callable[..., Any],
        details: grpc.ClientCallDetails,
        request_iterator: Iterator[Any],
    ) -> Any:
        method = str(details.method)
        return continuation(
            self._details(details, b""), self._signed_items(method, request_iterator)
        )
