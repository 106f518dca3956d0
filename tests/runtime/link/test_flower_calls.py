"""A call meant for a Flower SuperLink, on either of the link's ports, is answered with
UNIMPLEMENTED and what to use instead; Corolla's own services are served as before."""

from __future__ import annotations

import grpc
import pytest

from corolla.runtime import ControlClient, Link
from corolla.runtime.link._flower_calls import control_refusal, fleet_refusal


def _call(address: str, method: str, *, stream: bool = False) -> grpc.RpcError:
    """The error that ends a call to ``method`` (raw bytes, as any client may send)."""
    with grpc.insecure_channel(address) as channel:
        try:
            if stream:
                call = channel.stream_stream(method)(iter([b"", b""]), timeout=10)
                list(call)
            else:
                channel.unary_unary(method)(b"", timeout=10)
        except grpc.RpcError as exc:
            return exc
    pytest.fail(f"{method} was answered")


@pytest.mark.parametrize("method", ["/flwr.proto.Control/StartRun", "/flwr.proto.Control/ListRuns"])
def test_a_flower_cli_call_on_the_control_port_names_the_corolla_commands(
    link: Link, method: str
) -> None:
    refused = _call(link.control_address, method)

    assert refused.code() is grpc.StatusCode.UNIMPLEMENTED
    details = refused.details() or ""
    assert details.startswith(f"{method}: this is a Corolla link, not a Flower SuperLink")
    assert f"corolla run DIR --link {link.control_address}" in details
    assert f"corolla ls --link {link.control_address}" in details


@pytest.mark.parametrize("stream", [False, True])
def test_a_flower_supernode_call_on_the_fleet_port_names_corolla_node(
    link: Link, stream: bool
) -> None:
    refused = _call(link.fleet_address, "/flwr.proto.Fleet/CreateNode", stream=stream)

    assert refused.code() is grpc.StatusCode.UNIMPLEMENTED
    assert f"corolla node --link {link.fleet_address}" in (refused.details() or "")


def test_other_unknown_methods_and_corolla_s_own_services_are_served_as_before(
    link: Link,
) -> None:
    unknown = _call(link.control_address, "/corolla.v1.Control/NoSuchMethod")

    assert unknown.code() is grpc.StatusCode.UNIMPLEMENTED
    assert "Corolla link" not in (unknown.details() or "")
    with ControlClient(link.control_address) as client:
        assert client.list_runs() == []


def test_a_wildcard_address_is_shown_as_one_to_replace() -> None:
    assert "--link HOST:9093`" in control_refusal("0.0.0.0:9093")
    assert "--link HOST:9092`" in fleet_refusal("[::]:9092")
