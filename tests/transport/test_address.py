"""parse_address: HOST:PORT checked before gRPC sees it."""

from __future__ import annotations

import pytest

from corolla.core import ConfigError
from corolla.transport import Address, parse_address


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("127.0.0.1:9093", "127.0.0.1", 9093),
        (" link.example.org:9092 ", "link.example.org", 9092),
        ("localhost:1", "localhost", 1),
        ("[::1]:9093", "::1", 9093),
        ("127.0.0.1:65535", "127.0.0.1", 65535),
    ],
)
def test_accepts_host_and_port(text: str, host: str, port: int) -> None:
    assert parse_address(text) == Address(host, port)


def test_str_puts_ipv6_in_brackets() -> None:
    assert str(Address("::1", 9093)) == "[::1]:9093"
    assert str(Address("127.0.0.1", 9093)) == "127.0.0.1:9093"


def test_port_zero_only_to_listen() -> None:
    assert parse_address("0.0.0.0:0", listen=True) == Address("0.0.0.0", 0)
    with pytest.raises(ConfigError, match="ports go from 1 to 65535"):
        parse_address("127.0.0.1:0")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("127.0.0.1", "--link '127.0.0.1' has no port: write HOST:PORT, e.g. 127.0.0.1:9093"),
        ("127.0.0.1:70000", "port 70000 is out of range; ports go from 1 to 65535"),
        ("127.0.0.1:99999999", "port 99999999 is out of range"),
        ("127.0.0.1:abc", "the port 'abc' is not a number"),
        ("127.0.0.1:-1", "the port '-1' is not a number"),
        (":9093", "has no host"),
        ("::1:9093", "write an IPv6 address in brackets, e.g. [::1]:9093"),
        ("[::1]", "has no port: write [::1]:PORT"),
        ("[::1:9093", "lacks its closing ']'"),
        ("http://127.0.0.1:9093", "without http://, e.g. 127.0.0.1:9093"),
        ("127.0.0.1:9093/runs", "without a path"),
    ],
)
def test_refuses_with_what_to_write(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_address(text, what="--link", example_port=9093)

    assert message in str(raised.value)
    assert "\n" not in str(raised.value)
