"""The link's policy at work, in process: nodes admitted by their attributes, runs by
their bundle's hash or signatures; signatures kept with the bundle and handed out with
the run; every decision in the audit log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from corolla.core import ConfigError, CorollaError, ErrorCode
from corolla.runtime import ControlClient, Link, LinkLimits
from corolla.runtime._bundle import make_bundle
from corolla.transport import (
    channel_options,
    control_pb2,
    control_pb2_grpc,
    fleet_pb2,
    fleet_pb2_grpc,
    run_pb2,
    sha256_of,
    user_config_to_proto,
)
from corolla.trust import AppRules, LinkPolicy, SigningKey

from ..test_faults import ONE_MESSAGE_APP, _app


@pytest.fixture
def keys(tmp_path: Path) -> tuple[SigningKey, SigningKey]:
    return SigningKey.create(tmp_path / "a.pem"), SigningKey.create(tmp_path / "b.pem")


@pytest.fixture
def app(tmp_path: Path) -> Path:
    return _app(tmp_path / "app", "one_message_app", ONE_MESSAGE_APP)


def _link(tmp_path: Path, policy: LinkPolicy) -> Link:
    return Link(
        tmp_path / "link",
        fleet_address="127.0.0.1:0",
        control_address="127.0.0.1:0",
        limits=LinkLimits(sweep_interval=0.05),
        policy=policy,
    )


@pytest.fixture
def signed_only(tmp_path: Path, keys: tuple[SigningKey, SigningKey]) -> Iterator[Link]:
    """A link that runs the apps key ``a`` signed, and takes nodes in region eu only."""
    policy = LinkPolicy(
        path="policy.toml",
        required_attributes={"region": "eu"},
        apps=AppRules(trusted_signers=frozenset({keys[0].public_text})),
    )
    with _link(tmp_path, policy) as running:
        yield running


def _audit(link: Link) -> list[dict[str, Any]]:
    lines = (link.state_dir / "audit.log").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_signatures_are_kept_with_the_bundle_and_handed_out_with_the_run(
    signed_only: Link, app: Path, keys: tuple[SigningKey, SigningKey]
) -> None:
    # Arrange
    trusted, other = keys
    with ControlClient(signed_only.control_address) as client:
        # Act: signed by both keys; then the same bundle again, signed by the untrusted
        # key only: the trusted key's signature, kept with the bundle, still speaks for it
        first = client.submit(app, signing_keys=[trusted, other])
        second = client.submit(app, signing_keys=[other])
        described = client.get_run(second.run_id)
        for run in (first, second):
            client.stop_run(run.run_id)

    # Assert: the run names both signers, each signature valid over the bundle
    bundle = sha256_of(make_bundle(app))
    assert described.bundle_sha256 == bundle
    signatures = {s.public_key: s.signature for s in described.bundle_signatures}
    assert set(signatures) == {trusted.public_text, other.public_text}
    assert signatures[trusted.public_text] == trusted.sign_bundle(bundle).signature


def test_a_run_signed_only_by_an_untrusted_key_is_refused_and_recorded(
    signed_only: Link, app: Path, keys: tuple[SigningKey, SigningKey]
) -> None:
    # Arrange
    _, untrusted = keys
    with ControlClient(signed_only.control_address) as client:
        # Act
        with pytest.raises(CorollaError) as refused:
            client.submit(app, signing_keys=[untrusted])
        runs = client.list_runs()

    # Assert
    assert refused.value.code == ErrorCode.PERMISSION_DENIED
    assert "link policy (policy.toml, [apps] trusted-signers)" in str(refused.value)
    assert f"{untrusted.public_text} is not a trusted signer" in str(refused.value)
    assert runs == []
    (record,) = [r for r in _audit(signed_only) if r["kind"] == "policy.refused"]
    assert record["data"]["rule"] == "link policy (policy.toml, [apps] trusted-signers)"
    assert record["data"]["bundle"] == sha256_of(make_bundle(app))


def _submit_spec(link: Link, spec: control_pb2.RunSpec) -> grpc.RpcError:
    with grpc.insecure_channel(link.control_address, options=channel_options()) as channel:
        stub = control_pb2_grpc.ControlStub(channel)
        with pytest.raises(grpc.RpcError) as error:
            stub.SubmitRun(iter([control_pb2.SubmitRunRequest(spec=spec)]), timeout=30)
    return error.value


@pytest.mark.parametrize(
    ("public_key", "count", "status", "says"),
    [
        ("ed25519:AAAA", 1, grpc.StatusCode.INVALID_ARGUMENT, "names no Ed25519 key"),
        ("", 17, grpc.StatusCode.INVALID_ARGUMENT, "at most 16"),
    ],
)
def test_malformed_signatures_are_refused(
    signed_only: Link,
    keys: tuple[SigningKey, SigningKey],
    public_key: str,
    count: int,
    status: grpc.StatusCode,
    says: str,
) -> None:
    # Arrange
    bundle = "ab" * 32
    good = keys[0].sign_bundle(bundle)
    signature = run_pb2.BundleSignature(
        public_key=public_key or good.public_key, signature=good.signature
    )
    spec = control_pb2.RunSpec(
        bundle_sha256=bundle, bundle_size=10, bundle_signatures=[signature] * count
    )

    # Act
    error = _submit_spec(signed_only, spec)

    # Assert
    assert error.code() == status
    assert says in (error.details() or "")


def test_a_hash_that_is_not_a_sha256_is_refused_before_anything_is_stored(
    signed_only: Link,
) -> None:
    error = _submit_spec(signed_only, control_pb2.RunSpec(bundle_sha256="../x", bundle_size=1))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "64 lower-case hex digits" in (error.details() or "")


def test_a_node_is_admitted_by_its_attributes(signed_only: Link) -> None:
    # Arrange
    with grpc.insecure_channel(signed_only.fleet_address, options=channel_options()) as channel:
        stub = fleet_pb2_grpc.FleetStub(channel)

        def register(**attributes: Any) -> fleet_pb2.RegisterNodeResponse:
            request = fleet_pb2.RegisterNodeRequest(attributes=user_config_to_proto(attributes))
            response: fleet_pb2.RegisterNodeResponse = stub.RegisterNode(request, timeout=30)
            return response

        # Act
        with pytest.raises(grpc.RpcError) as outsider:
            register(region="us")
        with pytest.raises(grpc.RpcError) as anonymous:
            register()
        member = register(region="eu", gpu=True)

    # Assert
    assert outsider.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "[nodes] required-attributes" in (outsider.value.details() or "")
    assert anonymous.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "does not advertise 'region'" in (anonymous.value.details() or "")
    assert member.node_id
    kinds = [(r["kind"], r["actor"]) for r in _audit(signed_only) if r["kind"].startswith("policy")]
    assert kinds == [
        ("policy.refused", "a new node"),
        ("policy.refused", "a new node"),
        ("policy.admitted", "a new node"),
    ]


def test_an_error_keeps_a_path_beside_the_state_directory_whole(tmp_path: Path) -> None:
    # Arrange
    with _link(tmp_path, LinkPolicy()) as link:
        shared = link._shared
        assert shared is not None

        # Act
        text = shared.redact(f"{link.state_dir}-policy.toml and {link.state_dir}/blobs")

    # Assert
    assert text == f"{link.state_dir}-policy.toml and <link state>/blobs"


def test_without_a_policy_a_bad_signature_is_still_refused(
    tmp_path: Path, app: Path, keys: tuple[SigningKey, SigningKey]
) -> None:
    # Arrange: a key whose text names b, signing with a
    a, b = keys

    class Impostor:
        def sign_bundle(self, sha256: str) -> Any:
            return type(a.sign_bundle(sha256))(b.public_text, a.sign_bundle(sha256).signature)

    with (
        _link(tmp_path, LinkPolicy()) as link,
        ControlClient(link.control_address) as client,
        pytest.raises(CorollaError) as refused,
    ):
        # Act
        client.submit(app, signing_keys=[Impostor()])  # type: ignore[list-item]

    # Assert
    assert refused.value.code == ErrorCode.PERMISSION_DENIED
    assert f"the signature by {b.public_text} is not a valid signature" in str(refused.value)
    assert not isinstance(refused.value, ConfigError)
