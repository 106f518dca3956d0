"""The link's Prometheus endpoint, scraped over real HTTP(S) on loopback."""

from __future__ import annotations

import re
import socket
import ssl
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from corolla.core import ConfigError, Event
from corolla.runtime import Link
from corolla.runtime.link._metrics import split_http_address
from corolla.transport import (
    EncodedArray,
    bearer_metadata,
    channel_options,
    chunk_messages,
    event_to_proto,
    fleet_pb2,
    fleet_pb2_grpc,
    generate_certificates,
    serverappio_pb2,
    serverappio_pb2_grpc,
)

HASH = "0" * 64


@pytest.fixture
def link(tmp_path: Path) -> Iterator[Link]:
    with Link(
        tmp_path / "link",
        fleet_address="127.0.0.1:0",
        control_address="127.0.0.1:0",
        metrics_address="127.0.0.1:0",
    ) as running:
        yield running


def scrape(url: str, context: ssl.SSLContext | None = None) -> dict[tuple[str, str], float]:
    """``{(sample name, its label values joined by ','): value}`` read from ``url``."""
    with urllib.request.urlopen(url, timeout=10, context=context) as response:
        text = response.read().decode()
    return {
        (sample.name, ",".join(sample.labels.values())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_array_bytes_each_way_nodes_and_runs_are_reported(link: Link) -> None:
    # Arrange: a node and a run's ServerApp, each pushing a payload; the node pulls its own
    # again (a node downloads only what it uploaded or was sent in a message)
    node_array = EncodedArray.from_array(np.arange(800_000, dtype=np.float32))
    model = EncodedArray.from_array(np.arange(300_000, dtype=np.float64))
    run = link.state.create_run(HASH, {})
    with (
        grpc.insecure_channel(link.fleet_address, options=channel_options()) as fleet_channel,
        grpc.insecure_channel(link.serverappio_address, options=channel_options()) as appio,
    ):
        fleet = fleet_pb2_grpc.FleetStub(fleet_channel)
        registered = fleet.RegisterNode(fleet_pb2.RegisterNodeRequest())
        node = bearer_metadata(registered.token)
        server_app = bearer_metadata(link.issue_run_secret(run.run_id))
        before = scrape(str(link.metrics_url))

        # Act
        fleet.PushArrays(iter(chunk_messages(node_array, chunk_size=1 << 20)), metadata=node)
        serverappio_pb2_grpc.ServerAppIoStub(appio).PushArrays(
            iter(chunk_messages(model, chunk_size=1 << 20)), metadata=server_app
        )
        pulled = b"".join(
            c.data
            for c in fleet.PullArrays(
                fleet_pb2.PullArraysRequest(sha256=node_array.sha256), metadata=node
            )
        )
        after = scrape(str(link.metrics_url))

    # Assert
    assert pulled == node_array.tobytes()
    assert before[("corolla_link_array_bytes_total", "to_nodes")] == 0
    assert after[("corolla_link_array_bytes_total", "to_nodes")] == node_array.size
    assert after[("corolla_link_array_bytes_total", "from_nodes")] == node_array.size
    assert after[("corolla_link_array_bytes_total", "from_serverapps")] == model.size
    assert after[("corolla_link_array_bytes_total", "to_serverapps")] == 0
    assert after[("corolla_link_array_transfers_total", "to_nodes")] == 1
    assert after[("corolla_link_array_transfers_total", "from_nodes")] == 1
    assert after[("corolla_link_array_transfer_seconds_total", "from_nodes")] > 0
    assert after[("corolla_link_array_transfer_seconds_total", "to_serverapps")] == 0
    assert after[("corolla_link_nodes", "online")] == 1
    assert after[("corolla_link_nodes", "offline")] == 0
    assert after[("corolla_link_runs", "pending")] == 1
    assert after[("corolla_link_runs", "running")] == 0


def test_the_privacy_a_run_spent_is_reported_from_its_latest_privacy_event(link: Link) -> None:
    # Arrange: two runs, one of which emits privacy events as CentralDP does, through
    # the ServerAppIo service as a run's ServerApp sends them
    private, plain = link.state.create_run(HASH, {}), link.state.create_run(HASH, {})
    secret = bearer_metadata(link.issue_run_secret(private.run_id))

    def emit(server_round: int, epsilon: float) -> None:
        data = {"epsilon": epsilon, "delta": 1e-5}
        event = Event("privacy", private.run_id, server_round, data=data)
        request = serverappio_pb2.EmitEventsRequest(events=[event_to_proto(event, 0)])
        serverappio_pb2_grpc.ServerAppIoStub(appio).EmitEvents(request, metadata=secret)

    with grpc.insecure_channel(link.serverappio_address, options=channel_options()) as appio:
        emit(1, 0.5)
        first = scrape(str(link.metrics_url))
        emit(2, 0.8)
        emit(3, 1.25)

        # Act
        samples = scrape(str(link.metrics_url))

    # Assert
    assert first[("corolla_run_privacy_epsilon", str(private.run_id))] == 0.5
    assert samples[("corolla_run_privacy_epsilon", str(private.run_id))] == 1.25
    assert samples[("corolla_run_privacy_delta", str(private.run_id))] == 1e-5
    assert ("corolla_run_privacy_epsilon", str(plain.run_id)) not in samples


def test_a_link_with_certificates_serves_its_metrics_over_https(tmp_path: Path) -> None:
    files = generate_certificates(tmp_path / "certs")
    context = ssl.create_default_context(cafile=str(files.ca_certificate))
    with Link(
        tmp_path / "link",
        fleet_address="127.0.0.1:0",
        control_address="127.0.0.1:0",
        metrics_address="localhost:0",
        certificates=files.directory,
    ) as link:
        url = str(link.metrics_url)
        samples = scrape(url, context)
        with pytest.raises(urllib.error.URLError):  # not trusted without the CA
            scrape(url, ssl.create_default_context())
    assert url.startswith("https://localhost:")
    assert samples[("corolla_link_nodes", "online")] == 0


def test_the_metrics_server_stops_with_the_link(link: Link) -> None:
    url = str(link.metrics_url)
    scrape(url)
    link.stop()
    with pytest.raises(urllib.error.URLError):
        scrape(url)


def test_a_link_without_a_metrics_address_serves_none(tmp_path: Path) -> None:
    with Link(
        tmp_path / "link", fleet_address="127.0.0.1:0", control_address="127.0.0.1:0"
    ) as link:
        assert link.metrics_url is None


def test_metrics_beyond_loopback_need_certificates_or_insecure(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape("0.0.0.0:9100")):
        Link(
            tmp_path / "link",
            fleet_address="127.0.0.1:0",
            control_address="127.0.0.1:0",
            metrics_address="0.0.0.0:9100",
        )


def test_a_metrics_address_already_in_use_is_refused_naming_it(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        link = Link(
            tmp_path / "link",
            fleet_address="127.0.0.1:0",
            control_address="127.0.0.1:0",
            metrics_address=address,
        )
        with pytest.raises(ConfigError, match=re.escape(f"cannot serve metrics on {address}")):
            link.start()
    assert link.status.value == "stopped"


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:9100", ("127.0.0.1", 9100)),
        ("localhost:0", ("localhost", 0)),
        ("[::1]:9100", ("::1", 9100)),
    ],
)
def test_metrics_addresses_are_split_into_host_and_port(
    address: str, expected: tuple[str, int]
) -> None:
    assert split_http_address(address) == expected


@pytest.mark.parametrize("address", ["9100", ":9100", "localhost:", "localhost:http", "h:65536"])
def test_a_malformed_metrics_address_is_refused_naming_it(address: str) -> None:
    with pytest.raises(ConfigError, match="metrics address"):
        split_http_address(address)
