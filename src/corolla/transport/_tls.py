"""TLS for the link and its nodes: development certificates, gRPC credentials, the rule.

``corolla certs DIR`` calls :func:`generate_certificates`, which writes a development CA
and two certificates it signs, ECDSA P-256 keys throughout::

    ca.pem   ca.key     the CA: nodes trust ca.pem; ca.key signs, keep it offline
    link.pem link.key   the link's server certificate (SANs: localhost, 127.0.0.1, ::1
                        and the hostnames given), for TLS
    node.pem node.key   a node client certificate, for optional mutual TLS

:func:`server_credentials` and :func:`channel_credentials` build the gRPC credentials
from such files. :func:`requires_tls` is the security rule: TLS is required for every
address but loopback (and Unix sockets), unless the user explicitly asks for
``--insecure``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from corolla.core import ConfigError

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

__all__ = [
    "CertificateFiles",
    "channel_credentials",
    "generate_certificates",
    "requires_tls",
    "server_credentials",
]


@dataclasses.dataclass(frozen=True)
class CertificateFiles:
    """The files :func:`generate_certificates` writes into ``directory``."""

    directory: Path

    @property
    def ca_certificate(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def link_certificate(self) -> Path:
        return self.directory / "link.pem"

    @property
    def link_key(self) -> Path:
        return self.directory / "link.key"

    @property
    def node_certificate(self) -> Path:
        return self.directory / "node.pem"

    @property
    def node_key(self) -> Path:
        return self.directory / "node.key"

    def all(self) -> tuple[Path, ...]:
        return (
            self.ca_certificate,
            self.ca_key,
            self.link_certificate,
            self.link_key,
            self.node_certificate,
            self.node_key,
        )


def _subject_alt_names(hostnames: Sequence[str]) -> list[x509.GeneralName]:
    from cryptography import x509

    names: list[x509.GeneralName] = []
    for host in ["localhost", "127.0.0.1", "::1", *hostnames]:
        try:
            name: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            if not host or any(c.isspace() or c in "/:@" for c in host):
                raise ConfigError(f"not a hostname or IP address: {host!r}") from None
            name = x509.DNSName(host)
        if name not in names:
            names.append(name)
    return names


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    now: dt.datetime,
    days: int,
    *,
    usage: str,
    hostnames: Sequence[str] = (),
) -> x509.Certificate:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    is_ca = issuer is None
    issuer_name = name if issuer is None else issuer[0].subject
    signing_key = key if issuer is None else issuer[1]
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))  # tolerate clock skew
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=0 if is_ca else None), True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not is_ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=is_ca,
                crl_sign=is_ca,
                encipher_only=False,
                decipher_only=False,
            ),
            True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()), False
        )
    if usage == "server":
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False
        ).add_extension(x509.SubjectAlternativeName(_subject_alt_names(hostnames)), False)
    elif usage == "client":
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False
        )
    return builder.sign(signing_key, hashes.SHA256())


def _write(path: Path, data: bytes, *, secret: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    if secret:
        path.chmod(0o600)  # the file may have existed with looser permissions


def generate_certificates(
    directory: str | os.PathLike[str],
    *,
    hostnames: Sequence[str] = (),
    days: int = 365,
    overwrite: bool = False,
    now: dt.datetime | None = None,
) -> CertificateFiles:
    """Write a development CA, a link certificate and a node certificate to ``directory``.

    Parameters
    ----------
    directory
        Created if needed. Private keys are written with mode 0600.
    hostnames
        Names and IP addresses nodes use to reach the link, besides the loopback ones.
    days
        Validity of the certificates.
    overwrite
        Replace certificates already in ``directory``.
    now
        The issuing time (default: the current time), for reproducible tests.

    Raises
    ------
    ConfigError
        If ``directory`` already holds certificates and ``overwrite`` is false, a
        hostname is malformed, or ``days`` is not positive.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    if days <= 0:
        raise ConfigError(f"certificate validity must be a positive number of days, got {days}")
    files = CertificateFiles(Path(directory))
    existing = [p.name for p in files.all() if p.exists()]
    if existing and not overwrite:
        raise ConfigError(
            f"{files.directory} already holds {', '.join(existing)}; pass overwrite to replace"
        )
    _subject_alt_names(hostnames)  # reject a bad hostname before writing anything
    now = dt.datetime.now(dt.timezone.utc) if now is None else now
    files.directory.mkdir(parents=True, exist_ok=True)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("Corolla development CA", ca_key, None, now, days, usage="ca")
    link_key = ec.generate_private_key(ec.SECP256R1())
    link = _certificate(
        "corolla-link", link_key, (ca, ca_key), now, days, usage="server", hostnames=hostnames
    )
    node_key = ec.generate_private_key(ec.SECP256R1())
    node = _certificate("corolla-node", node_key, (ca, ca_key), now, days, usage="client")

    pem = serialization.Encoding.PEM
    for cert, key, cert_path, key_path in (
        (ca, ca_key, files.ca_certificate, files.ca_key),
        (link, link_key, files.link_certificate, files.link_key),
        (node, node_key, files.node_certificate, files.node_key),
    ):
        _write(cert_path, cert.public_bytes(pem), secret=False)
        key_bytes = key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        _write(key_path, key_bytes, secret=True)
    return files


def _read(path: str | os.PathLike[str], what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} {os.fspath(path)!r}: {exc}") from exc


def _read_ca(path: str | os.PathLike[str]) -> bytes:
    """The PEM certificates of a CA file, checked here: gRPC would take any bytes, and
    fail each connection later with its own log lines."""
    data = _read(path, "CA")
    from cryptography import x509

    try:
        x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise ConfigError(
            f"the CA {os.fspath(path)!r} holds no PEM certificate: give the CA certificate "
            "that signed the link's (`corolla certs` writes it as ca.pem)"
        ) from exc
    return data


def server_credentials(
    certificate: str | os.PathLike[str],
    private_key: str | os.PathLike[str],
    *,
    client_ca: str | os.PathLike[str] | None = None,
) -> grpc.ServerCredentials:
    """TLS credentials for a server (the link) from PEM files.

    With ``client_ca``, clients must present a certificate signed by it (mutual TLS).

    Raises
    ------
    ConfigError
        If a file cannot be read.
    """
    pair = (_read(private_key, "private key"), _read(certificate, "certificate"))
    if client_ca is None:
        return grpc.ssl_server_credentials([pair])
    return grpc.ssl_server_credentials(
        [pair], root_certificates=_read(client_ca, "CA certificate"), require_client_auth=True
    )


def channel_credentials(
    root_certificates: str | os.PathLike[str] | None = None,
    *,
    certificate: str | os.PathLike[str] | None = None,
    private_key: str | os.PathLike[str] | None = None,
) -> grpc.ChannelCredentials:
    """TLS credentials for a client (a node, the CLI) from PEM files.

    ``root_certificates`` is the CA to verify the server with (default: the system's
    trust store). ``certificate`` and ``private_key`` are the client's own, for mutual TLS.

    Raises
    ------
    ConfigError
        If a file cannot be read, ``root_certificates`` holds no PEM certificate, or
        only one of ``certificate`` and ``private_key`` is given.
    """
    if (certificate is None) != (private_key is None):
        raise ConfigError("give both the client certificate and its private key, or neither")
    return grpc.ssl_channel_credentials(
        root_certificates=None if root_certificates is None else _read_ca(root_certificates),
        private_key=None if private_key is None else _read(private_key, "private key"),
        certificate_chain=None if certificate is None else _read(certificate, "certificate"),
    )


def _hosts(address: str) -> list[str] | None:
    """The hosts of a gRPC address, or None for a Unix socket."""
    target = address.strip()
    if target.startswith(("unix:", "unix-abstract:")):
        return None
    if target.startswith("dns:"):
        target = target[4:]
        if target.startswith("//"):  # dns://[authority]/host:port
            target = target[2:].partition("/")[2]
    elif target.startswith(("ipv4:", "ipv6:")):
        target = target[5:]
    hosts = []
    for part in target.split(","):
        part = part.strip()
        if part.startswith("["):
            host = part[1 : part.find("]")] if "]" in part else part[1:]
        elif part.count(":") == 1:
            host = part.partition(":")[0]
        else:  # a bare IPv6 address or a host without a port
            host = part
        hosts.append(host)
    return hosts


def _is_loopback(host: str) -> bool:
    name = host.lower().rstrip(".")
    if name == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(name.partition("%")[0])  # drop an IPv6 zone id
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def requires_tls(address: str) -> bool:
    """True unless every host of the gRPC ``address`` is loopback (or it is a Unix socket).

    ``localhost``, ``127.0.0.0/8`` and ``::1`` are loopback; an empty host, ``0.0.0.0``
    and ``[::]`` listen on every interface, so they require TLS, as does any name.
    """
    hosts = _hosts(address)
    return hosts is not None and not all(_is_loopback(h) for h in hosts)
