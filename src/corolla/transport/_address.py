"""``HOST:PORT`` addresses, checked before a channel or a server is made of them.

gRPC takes an address as a string and fails late and vaguely on a mistake: a port left
out is taken for a name to resolve, and a port over 65535 wraps around silently to
another port. :func:`parse_address` refuses these at once, with a message that says
what to write instead::

    127.0.0.1:9093        an IPv4 address and a port
    link.example.org:9092 a name and a port
    [::1]:9093            an IPv6 address, in brackets, and a port
    0.0.0.0:0             (listening) every interface, a port the system picks
"""

from __future__ import annotations

import dataclasses
import ipaddress

from corolla.core import ConfigError

__all__ = ["Address", "parse_address"]

_MAX_PORT = 65535


@dataclasses.dataclass(frozen=True)
class Address:
    """A host (a name, an IPv4 or an IPv6 address, without brackets) and a port."""

    host: str
    port: int

    def __str__(self) -> str:
        # gRPC, like URLs, needs an IPv6 address in brackets before its port.
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def _example(host: str, port: int | None) -> str:
    shown = host if host and "/" not in host else "127.0.0.1"
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"{shown}:{port if port is not None else 9093}"


def parse_address(
    text: str, *, what: str = "address", listen: bool = False, example_port: int | None = None
) -> Address:
    """Check ``HOST:PORT`` (``[IPv6]:PORT`` for IPv6) and return it as an :class:`Address`.

    Parameters
    ----------
    text
        What the user wrote.
    what
        How messages name it, e.g. ``"--link"``.
    listen
        True for an address to listen on: port 0 (the system picks one) is allowed.
    example_port
        The port the messages suggest when one is missing (e.g. 9093 for the Control API).

    Raises
    ------
    ConfigError
        If the port is missing, not a number, or outside 1-65535 (0-65535 to listen on);
        if the host is empty, an unbracketed IPv6 address, or the text carries a scheme
        (``http://``) or a path.
    """
    address = text.strip()
    if "://" in address:
        scheme, _, rest = address.partition("://")
        raise ConfigError(
            f"{what} {text!r}: give HOST:PORT without {scheme}://, "
            f"e.g. {_example(rest.partition('/')[0].rpartition(':')[0], example_port)}"
        )
    if "/" in address:
        raise ConfigError(f"{what} {text!r}: give HOST:PORT, without a path")
    if address.startswith("["):
        close = address.find("]")
        if close < 0:
            raise ConfigError(f"{what} {text!r}: the IPv6 address lacks its closing ']'")
        host, rest = address[1:close], address[close + 1 :]
        if not rest.startswith(":"):
            raise ConfigError(
                f"{what} {text!r} has no port: write [{host}]:PORT, "
                f"e.g. {_example(host, example_port)}"
            )
        port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host.partition("%")[0])
        except ValueError:
            raise ConfigError(f"{what} {text!r}: {host!r} is not an IPv6 address") from None
    elif address.count(":") > 1:
        raise ConfigError(
            f"{what} {text!r}: write an IPv6 address in brackets, e.g. [::1]:"
            f"{example_port if example_port is not None else 9093}"
        )
    else:
        host, colon, port_text = address.partition(":")
        if not colon:
            raise ConfigError(
                f"{what} {text!r} has no port: write HOST:PORT, e.g. {_example(host, example_port)}"
            )
    if not host:
        everywhere = " (0.0.0.0:PORT listens on every interface)" if listen else ""
        raise ConfigError(f"{what} {text!r} has no host: write HOST:PORT{everywhere}")
    if any(c.isspace() for c in host):
        raise ConfigError(f"{what} {text!r}: a host holds no spaces")
    if not port_text.isdigit() or not port_text.isascii():
        raise ConfigError(f"{what} {text!r}: the port {port_text!r} is not a number")
    port = int(port_text)
    lowest = 0 if listen else 1
    if not lowest <= port <= _MAX_PORT:
        raise ConfigError(
            f"{what} {text!r}: port {port} is out of range; ports go from {lowest} to {_MAX_PORT}"
        )
    return Address(host, port)
