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
from corolla.runtime.link._run_metrics import ENDED_RUNS_KEPT, followed_runs
from corolla.state import RunInfo, RunStatus
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


def scrape_run(url: str, run_id: int) -> dict[tuple[str, ...], float]:
    """``{(sample name, its other label values but app, in order of their names): value}``
    of the samples labelled with run ``run_id``, read from ``url``."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        (
            sample.name,
            *(v for k, v in sorted(sample.labels.items()) if k not in ("run_id", "app")),
        ): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels.get("run_id") == str(run_id)
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


def _round_end(server_round: int, train: dict[str, float], replies: int, failures: int) -> dict:
    return {
        "round": server_round,
        "train": train,
        "evaluate": {"loss": 1.0 / server_round, "note": "text is no sample"},
        "server": {},
        "train_replies": replies,
        "train_failures": failures,
        "evaluate_replies": replies,
        "evaluate_failures": 0,
        "seconds": 0.5 * server_round,
    }


def test_each_run_s_last_metrics_rounds_replies_and_failures_are_reported(link: Link) -> None:
    # Arrange: a run whose ServerApp ends two rounds, the second twice (a restarted
    # ServerApp redoes the round after its checkpoint), and a run that ended none
    run, idle = link.state.create_run(HASH, {}), link.state.create_run(HASH, {})
    secret = bearer_metadata(link.issue_run_secret(run.run_id))

    def emit(server_round: int, data: dict) -> None:
        event = Event("round.end", run.run_id, server_round, data=data)
        request = serverappio_pb2.EmitEventsRequest(events=[event_to_proto(event, 0)])
        serverappio_pb2_grpc.ServerAppIoStub(appio).EmitEvents(request, metadata=secret)

    with grpc.insecure_channel(link.serverappio_address, options=channel_options()) as appio:
        emit(1, _round_end(1, {"loss": 2.0, "accuracy": 0.5}, replies=3, failures=0))
        first = scrape_run(str(link.metrics_url), run.run_id)
        emit(2, _round_end(2, {"loss": 1.5}, replies=2, failures=1))
        emit(2, _round_end(2, {"loss": 1.25}, replies=3, failures=0))

        # Act
        samples = scrape_run(str(link.metrics_url), run.run_id)
        others = scrape_run(str(link.metrics_url), idle.run_id)

    # Assert
    assert first[("corolla_run_rounds",)] == 1
    assert samples[("corolla_run_rounds",)] == 2
    assert samples[("corolla_run_round_seconds",)] == 1.0
    assert samples[("corolla_run_metric", "loss", "train")] == 1.25
    assert samples[("corolla_run_metric", "accuracy", "train")] == 0.5
    assert samples[("corolla_run_metric", "loss", "evaluate")] == 0.5
    assert ("corolla_run_metric", "note", "evaluate") not in samples
    assert samples[("corolla_run_replies_total", "train")] == 5
    assert samples[("corolla_run_failures_total", "train")] == 1
    assert samples[("corolla_run_replies_total", "evaluate")] == 5
    assert samples[("corolla_run_last_round_replies", "train")] == 3
    assert samples[("corolla_run_last_round_failures", "train")] == 0
    assert others == {("corolla_run_rounds",): 0}


def _run(run_id: int, status: RunStatus, ended_at: float | None = None) -> RunInfo:
    return RunInfo(run_id, HASH, {}, status, 0.0, 0.0, ended_at=ended_at)


def test_only_runs_going_and_the_latest_ended_are_followed() -> None:
    # Arrange: many ended runs, ended in reverse order of their ids, and two going
    ended = [_run(i, RunStatus.FINISHED, ended_at=1000.0 - i) for i in range(1, 40)]
    going = [_run(50, RunStatus.RUNNING), _run(51, RunStatus.PENDING)]

    # Act
    followed = followed_runs(ended + going)

    # Assert: the ended runs kept are those that ended last, in order of their ids
    assert [r.run_id for r in followed] == [*range(1, ENDED_RUNS_KEPT + 1), 50, 51]


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
