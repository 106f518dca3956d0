"""gRPC channel and server options every Corolla endpoint shares.

gRPC refuses messages over 4 MiB by default, and a chunk of :data:`DEFAULT_CHUNK_SIZE`
bytes plus its framing is just over that, so both ends raise the limit. Keepalive pings
keep a node's long-lived ``Receive`` stream open through NATs and proxies that drop idle
connections, and let either side notice a dead peer; the server must permit pings that
frequent or it closes the connection with ``too_many_pings``.
"""

from __future__ import annotations

__all__ = ["DEFAULT_MAX_MESSAGE_BYTES", "channel_options", "server_options"]

#: Largest protobuf message either end accepts: far above a chunk, far below 2 GiB.
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024

#: Seconds between keepalive pings on an otherwise idle connection.
DEFAULT_KEEPALIVE_S = 30.0

Options = list[tuple[str, int]]


def _common(max_message_bytes: int, keepalive_s: float) -> Options:
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", int(keepalive_s * 1000)),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
    ]


def channel_options(
    *,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    keepalive_s: float = DEFAULT_KEEPALIVE_S,
) -> Options:
    """Options for ``grpc.secure_channel`` / ``grpc.insecure_channel``."""
    return [*_common(max_message_bytes, keepalive_s), ("grpc.http2.max_pings_without_data", 0)]


def server_options(
    *,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    keepalive_s: float = DEFAULT_KEEPALIVE_S,
) -> Options:
    """Options for ``grpc.server``, accepting the pings :func:`channel_options` sends."""
    return [
        *_common(max_message_bytes, keepalive_s),
        ("grpc.http2.min_ping_interval_without_data_ms", int(keepalive_s * 1000 / 2)),
        ("grpc.http2.max_ping_strikes", 0),
        # gRPC lets a second server bind a port already served (SO_REUSEPORT), and the
        # connections then split between the two: a second link must be refused instead.
        ("grpc.so_reuseport", 0),
    ]
