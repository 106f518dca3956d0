"""ControlClient says what to pass when the link was named wrongly, not gRPC's status."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from corolla.core import ConfigError
from corolla.runtime import ControlClient, Link
from corolla.transport import CertificateFiles, TransportError, generate_certificates
from corolla.trust import Role, TrustStore


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> CertificateFiles:
    return generate_certificates(tmp_path_factory.mktemp("certs") / "certs")


@pytest.fixture
def tls_link(tmp_path: Path, certificates: CertificateFiles) -> Iterator[Link]:
    with Link(
        tmp_path / "tls-link",
        fleet_address="127.0.0.1:0",
        control_address="127.0.0.1:0",
        certificates=certificates.directory,
    ) as running:
        yield running


def _message(address: str, root_certificates: Path | None = None) -> str:
    with (
        pytest.raises(ConfigError) as raised,
        ControlClient(address, root_certificates=root_certificates) as client,
    ):
        client.list_runs()
    return str(raised.value)


def test_a_client_without_certificates_against_a_tls_link_is_told_to_pass_them(
    tls_link: Link,
) -> None:
    message = _message(tls_link.control_address)

    assert message == (
        f"the link at {tls_link.control_address} serves TLS: give its CA certificate with "
        "--root-certificates FILE (the ca.pem that `corolla certs` wrote)"
    )


def test_a_client_with_certificates_against_a_plain_link_is_told_to_leave_them_out(
    link: Link, certificates: CertificateFiles
) -> None:
    message = _message(link.control_address, root_certificates=certificates.ca_certificate)

    assert message.startswith(f"the link at {link.control_address} serves without TLS: ")
    assert "leave out --root-certificates" in message


def test_a_certificate_from_another_ca_is_named(tls_link: Link, tmp_path: Path) -> None:
    other = generate_certificates(tmp_path / "other")

    message = _message(tls_link.control_address, root_certificates=other.ca_certificate)

    assert f"is not signed by the CA in {other.ca_certificate}" in message


def test_the_right_certificate_works(tls_link: Link, certificates: CertificateFiles) -> None:
    with ControlClient(
        tls_link.control_address, root_certificates=certificates.ca_certificate
    ) as client:
        assert client.list_runs() == []


def test_the_fleet_address_is_told_apart_from_the_control_address(link: Link) -> None:
    message = _message(link.fleet_address)

    assert message.startswith(f"{link.fleet_address} is not the link's Control API")
    assert "printed after 'control' (port 9093 by default)" in message
    assert "UNIMPLEMENTED" not in message


def _adjacent_ports() -> tuple[int, int]:
    """Two free ports in a row, as `corolla link` uses by default (9092, 9093)."""
    for _ in range(50):
        with socket.socket() as first, socket.socket() as second:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            try:
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port, port + 1
    pytest.skip("no two adjacent free ports")


@pytest.mark.parametrize("auth", [False, True])
def test_the_control_port_after_the_fleet_port_is_named(tmp_path: Path, auth: bool) -> None:
    # With auth, the Control API answers the probe's call (without a token) by refusing it.
    fleet, control = _adjacent_ports()
    if auth:
        with TrustStore(tmp_path / "link" / TrustStore.FILE) as trust:
            trust.add_account("root", Role.ADMIN, "root-password")
    with Link(
        tmp_path / "link",
        fleet_address=f"127.0.0.1:{fleet}",
        control_address=f"127.0.0.1:{control}",
        auth=auth,
    ):
        message = _message(f"127.0.0.1:{fleet}")

    assert message.endswith(f"the Control API answers at 127.0.0.1:{control}: use that")


def test_no_link_at_all_is_a_transport_error_without_grpc_text() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sock.getsockname()[1]}"  # bound, not listening: refused
        with pytest.raises(TransportError) as raised, ControlClient(address) as client:
            client.list_runs()

    assert str(raised.value) == (
        f"no link answers at {address} (connection refused): is `corolla link` running, "
        "and is this its control address?"
    )
