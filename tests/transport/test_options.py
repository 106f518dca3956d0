from __future__ import annotations

from corolla.transport import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_MAX_MESSAGE_BYTES,
    channel_options,
    server_options,
)


def test_a_full_chunk_fits_in_a_message_with_room_to_spare() -> None:
    assert DEFAULT_CHUNK_SIZE + 1024 < DEFAULT_MAX_MESSAGE_BYTES < 2**31


def test_both_ends_raise_the_message_limit() -> None:
    for options in (dict(channel_options()), dict(server_options())):
        assert options["grpc.max_receive_message_length"] == DEFAULT_MAX_MESSAGE_BYTES
        assert options["grpc.max_send_message_length"] == DEFAULT_MAX_MESSAGE_BYTES


def test_server_permits_the_pings_clients_send() -> None:
    client = dict(channel_options(keepalive_s=20))
    server = dict(server_options(keepalive_s=20))

    assert (
        server["grpc.http2.min_ping_interval_without_data_ms"] <= client["grpc.keepalive_time_ms"]
    )
