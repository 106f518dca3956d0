"""What a failed connection to the link means: a setting to fix, or a drop to retry.

A node retries a connection that drops, with backoff, for as long as it runs: the link
may restart, the network may come back. But a connection that never worked because of
the node's own settings will not work by retrying, and gRPC's details for it read like
internals. So the first connection's failure is looked at (:func:`setting_error`): a
TLS handshake that failed (the CA given with ``--root-certificates`` did not sign the
link's certificate, or the link does not serve TLS) or a peer that has no Fleet service
(the link's Control address given instead) ends the node with a
:class:`~corolla.core.ConfigError` that says what to do. A link that does not answer
yet is not a setting: the node waits for it.
"""

from __future__ import annotations

import re

from corolla.core import ConfigError, CorollaError
from corolla.transport import TransportError

__all__ = ["describe", "setting_error"]

#: What gRPC's details say of a TLS handshake that failed.
_HANDSHAKE = re.compile(r"handshake", re.IGNORECASE)
#: The OpenSSL reason in a failed handshake's details, e.g. CERTIFICATE_VERIFY_FAILED.
_SSL_REASON = re.compile(r"OPENSSL_internal:([A-Z_]+)")


def describe(error: CorollaError, tls: bool) -> str:
    """One line saying why a call to the link failed, without gRPC's addressing."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    if not isinstance(error, TransportError):
        return text
    reason = _SSL_REASON.search(text)
    if reason is not None:
        return f"{error.status}: TLS handshake failed ({reason.group(1)})"
    if "last error: " in text:
        # "UNAVAILABLE: failed to connect to all addresses; last error: UNKNOWN:
        # ipv4:127.0.0.1:9092: Failed to connect to remote host: Connection refused"
        text = f"{error.status}: {text.rsplit(': ', 1)[-1]}"
    if not tls and text.endswith("Socket closed"):
        # What a link serving TLS does to a node that speaks plain HTTP/2.
        text += " (if the link serves TLS, give --root-certificates)"
    elif tls and text.endswith("Socket closed"):
        # What a link requiring node certificates does to a node presenting none, or one
        # its CA did not sign (as a link that is going away would, so it is retried).
        text += (
            " (if the link requires node certificates, give --certificate and --key, "
            "signed by its CA)"
        )
    return text


def setting_error(error: CorollaError, address: str, tls: bool) -> ConfigError | None:
    """The error to end the node with, if the first connection to ``address`` failed
    because of the node's settings; None if it is worth retrying."""
    if not isinstance(error, TransportError):
        return None
    if error.status == "UNIMPLEMENTED":
        return ConfigError(
            f"no Fleet service answers at {address}: give the link's Fleet address with "
            "--link (`corolla link --fleet-address`, port 9092 by default), not its "
            "Control address"
        )
    if tls and error.status == "UNAVAILABLE" and _HANDSHAKE.search(str(error)):
        reason = _SSL_REASON.search(str(error))
        why = f" ({reason.group(1)})" if reason else ""
        return ConfigError(
            f"the TLS handshake with the link at {address} failed{why}: give with "
            "--root-certificates the CA certificate that signed the link's certificate "
            "(`corolla certs` writes it as ca.pem), and check that the link serves TLS "
            "(`corolla link --certificates`)"
        )
    return None
