from __future__ import annotations

import datetime as dt
import ipaddress
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from corolla.core import ConfigError
from corolla.transport import (
    CertificateFiles,
    TransportError,
    channel_credentials,
    channel_options,
    fleet_pb2,
    fleet_pb2_grpc,
    generate_certificates,
    requires_tls,
    server_credentials,
    translate_rpc_errors,
)

from .servers import serve


class HeartbeatFleet(fleet_pb2_grpc.FleetServicer):
    """The smallest Fleet: answers heartbeats, and tells whether the peer showed a cert."""

    def Heartbeat(self, request: Any, context: grpc.ServicerContext) -> Any:
        peer_has_cert = bool(context.auth_context().get("x509_common_name"))
        return fleet_pb2.HeartbeatResponse(heartbeat_interval=2.0 if peer_has_cert else 1.0)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertificateFiles:
    return generate_certificates(tmp_path_factory.mktemp("certs"), hostnames=["link.example"])


@pytest.fixture(scope="module")
def other_certs(tmp_path_factory: pytest.TempPathFactory) -> CertificateFiles:
    return generate_certificates(tmp_path_factory.mktemp("other"))


@pytest.fixture(scope="module")
def tls_port(certs: CertificateFiles) -> Iterator[int]:
    credentials = server_credentials(certs.link_certificate, certs.link_key)
    register = lambda s: fleet_pb2_grpc.add_FleetServicer_to_server(HeartbeatFleet(), s)  # noqa: E731
    with serve(register, credentials) as port:
        yield port


def heartbeat(address: str, credentials: grpc.ChannelCredentials) -> float:
    with grpc.secure_channel(address, credentials, options=channel_options()) as channel:
        stub = fleet_pb2_grpc.FleetStub(channel)
        with translate_rpc_errors():
            reply = stub.Heartbeat(fleet_pb2.HeartbeatRequest(), timeout=10)
    return reply.heartbeat_interval


# Certificates


def test_generated_files(certs: CertificateFiles) -> None:
    for path in certs.all():
        assert path.is_file()
    for key in (certs.ca_key, certs.link_key, certs.node_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_link_certificate_names_loopback_and_given_hosts(certs: CertificateFiles) -> None:
    cert = x509.load_pem_x509_certificate(certs.link_certificate.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value

    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "link.example"}
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    }
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_certificates_chain_to_the_ca(certs: CertificateFiles) -> None:
    ca = x509.load_pem_x509_certificate(certs.ca_certificate.read_bytes())
    for path in (certs.link_certificate, certs.node_certificate):
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        cert.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_validity_follows_the_injected_clock(tmp_path: Path) -> None:
    now = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)

    files = generate_certificates(tmp_path, days=10, now=now)

    cert = x509.load_pem_x509_certificate(files.node_certificate.read_bytes())
    assert cert.not_valid_after_utc == now + dt.timedelta(days=10)
    assert cert.not_valid_before_utc < now


def test_existing_certificates_are_not_overwritten(certs: CertificateFiles) -> None:
    before = certs.ca_certificate.read_bytes()

    with pytest.raises(ConfigError, match="already holds"):
        generate_certificates(certs.directory)

    assert certs.ca_certificate.read_bytes() == before


def test_overwrite_replaces_them(tmp_path: Path) -> None:
    first = generate_certificates(tmp_path).ca_certificate.read_bytes()

    second = generate_certificates(tmp_path, overwrite=True).ca_certificate.read_bytes()

    assert first != second


@pytest.mark.parametrize("hostname", ["", "a b", "http://x", "user@host"])
def test_malformed_hostname_is_refused(tmp_path: Path, hostname: str) -> None:
    with pytest.raises(ConfigError, match="hostname"):
        generate_certificates(tmp_path, hostnames=[hostname])
    assert list(tmp_path.iterdir()) == []


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        channel_credentials(tmp_path / "nope.pem")


def test_a_ca_file_that_holds_no_certificate_is_a_config_error(tmp_path: Path) -> None:
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate\n")

    with pytest.raises(ConfigError, match="holds no PEM certificate"):
        channel_credentials(garbage)


def test_client_certificate_needs_its_key(certs: CertificateFiles) -> None:
    with pytest.raises(ConfigError, match="both"):
        channel_credentials(certs.ca_certificate, certificate=certs.node_certificate)


# A real TLS handshake on 127.0.0.1


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_node_verifies_the_link(certs: CertificateFiles, tls_port: int, host: str) -> None:
    assert heartbeat(f"{host}:{tls_port}", channel_credentials(certs.ca_certificate)) == 1.0


def test_client_trusting_another_ca_is_refused(
    other_certs: CertificateFiles, tls_port: int
) -> None:
    with pytest.raises(TransportError) as caught:
        heartbeat(f"127.0.0.1:{tls_port}", channel_credentials(other_certs.ca_certificate))

    assert caught.value.status == "UNAVAILABLE"


def test_plaintext_client_is_refused(tls_port: int) -> None:
    with (
        grpc.insecure_channel(f"127.0.0.1:{tls_port}") as channel,
        pytest.raises(TransportError),
        translate_rpc_errors(),
    ):
        fleet_pb2_grpc.FleetStub(channel).Heartbeat(fleet_pb2.HeartbeatRequest(), timeout=5)


def test_mutual_tls(certs: CertificateFiles, other_certs: CertificateFiles) -> None:
    credentials = server_credentials(
        certs.link_certificate, certs.link_key, client_ca=certs.ca_certificate
    )
    register = lambda s: fleet_pb2_grpc.add_FleetServicer_to_server(HeartbeatFleet(), s)  # noqa: E731
    with serve(register, credentials) as port:
        address = f"127.0.0.1:{port}"
        node = channel_credentials(
            certs.ca_certificate, certificate=certs.node_certificate, private_key=certs.node_key
        )
        stranger = channel_credentials(
            certs.ca_certificate,
            certificate=other_certs.node_certificate,
            private_key=other_certs.node_key,
        )

        assert heartbeat(address, node) == 2.0
        with pytest.raises(TransportError):
            heartbeat(address, channel_credentials(certs.ca_certificate))
        with pytest.raises(TransportError):
            heartbeat(address, stranger)


# The rule


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:9092", False),
        ("127.8.9.10:9092", False),
        ("localhost:9092", False),
        ("LOCALHOST.:9092", False),
        ("[::1]:9092", False),
        ("::1", False),
        ("[::ffff:127.0.0.1]:9092", False),
        ("ipv4:127.0.0.1:1,127.0.0.2:2", False),
        ("dns:///localhost:9092", False),
        ("dns://8.8.8.8/localhost:9092", False),
        ("unix:/tmp/link.sock", False),
        ("0.0.0.0:9092", True),
        ("[::]:9092", True),
        (":9092", True),
        ("10.0.0.5:9092", True),
        ("link.example.org:443", True),
        ("localhost.example.org:9092", True),
        ("ipv4:127.0.0.1:1,10.0.0.1:2", True),
        ("dns:///link.example.org:443", True),
    ],
)
def test_requires_tls(address: str, expected: bool) -> None:
    assert requires_tls(address) is expected
