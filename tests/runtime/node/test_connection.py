"""What a failed connection to the link means: a setting to fix, or a drop to retry."""

from __future__ import annotations

import pytest

from corolla.core import ConfigError, ErrorCode
from corolla.runtime.node._connection import describe, setting_error
from corolla.transport import TransportError

ADDRESS = "link.example.org:9092"

REFUSED = TransportError(
    "UNAVAILABLE: failed to connect to all addresses; last error: UNKNOWN: "
    "ipv4:127.0.0.1:9092: Failed to connect to remote host: Connection refused",
    status="UNAVAILABLE",
    code=ErrorCode.UNKNOWN,
)
WRONG_CA = TransportError(
    "UNAVAILABLE: failed to connect to all addresses; last error: UNKNOWN: "
    "ipv4:127.0.0.1:9092: Tls handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: "
    "error:1000007d:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED: unable to get "
    "local issuer certificate: OK",
    status="UNAVAILABLE",
)
CLOSED = TransportError(
    "UNAVAILABLE: failed to connect to all addresses; last error: UNAVAILABLE: "
    "ipv4:127.0.0.1:9092: Socket closed",
    status="UNAVAILABLE",
)
NOT_FLEET = TransportError("UNIMPLEMENTED: Method not found!", status="UNIMPLEMENTED")


def test_a_handshake_that_failed_is_a_setting_when_the_node_speaks_tls() -> None:
    error = setting_error(WRONG_CA, ADDRESS, tls=True)

    assert isinstance(error, ConfigError)
    assert "--root-certificates" in str(error) and "CERTIFICATE_VERIFY_FAILED" in str(error)
    assert "\n" not in str(error)


def test_a_peer_without_a_fleet_service_is_a_setting() -> None:
    error = setting_error(NOT_FLEET, ADDRESS, tls=False)

    assert isinstance(error, ConfigError)
    assert "no Fleet service answers at link.example.org:9092" in str(error)


@pytest.mark.parametrize("failure", [REFUSED, CLOSED])
def test_a_link_that_does_not_answer_is_waited_for(failure: TransportError) -> None:
    assert setting_error(failure, ADDRESS, tls=True) is None
    assert setting_error(failure, ADDRESS, tls=False) is None


def test_failures_are_told_in_one_line_without_grpc_s_addressing() -> None:
    assert describe(REFUSED, tls=False) == "UNAVAILABLE: Connection refused"
    assert describe(WRONG_CA, tls=True) == (
        "UNAVAILABLE: TLS handshake failed (CERTIFICATE_VERIFY_FAILED)"
    )
    assert describe(CLOSED, tls=False) == (
        "UNAVAILABLE: Socket closed (if the link serves TLS, give --root-certificates)"
    )


def test_a_closed_tls_connection_suggests_a_node_certificate() -> None:
    assert describe(CLOSED, tls=True) == (
        "UNAVAILABLE: Socket closed (if the link requires node certificates, give "
        "--certificate and --key, signed by its CA)"
    )
