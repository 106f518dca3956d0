"""A node's policy gate: a run's app checked once with the signatures the node verifies
itself, its rounds counted by message group so that no ServerApp gets more by reusing a
group, and its wall time read on an injected clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from corolla.core import PermissionDeniedError
from corolla.runtime.node._gate import PolicyGate
from corolla.transport import message_pb2, run_pb2
from corolla.trust import AppRules, NodePolicy, SigningKey

BUNDLE = "ab" * 32


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _run(run_id: int = 1, bundle: str = BUNDLE) -> run_pb2.Run:
    return run_pb2.Run(run_id=run_id, bundle_sha256=bundle)


def _message(message_id: str, group: str, message_type: str = "train") -> message_pb2.Metadata:
    return message_pb2.Metadata(
        run_id=1, message_id=message_id, group_id=group, message_type=message_type
    )


def test_a_round_is_a_group_and_its_evaluation_counts_with_it() -> None:
    # Arrange
    gate = PolicyGate(NodePolicy(max_rounds=2), FakeClock())
    run = _run()

    # Act: rounds 1 and 2 (train and evaluate each), a redelivery, then round 3
    for i, (group, kind) in enumerate([("1", "train"), ("1", "evaluate"), ("2", "train")]):
        gate.admit(run, _message(f"m{i}", group, kind))
    gate.admit(run, _message("m2", "2", "train"))  # sent again: counted once
    gate.admit(run, _message("m3", "2", "evaluate"))

    # Assert
    with pytest.raises(PermissionDeniedError, match=r"\[runs\] max-rounds"):
        gate.admit(run, _message("m4", "3", "train"))


def test_a_group_used_again_counts_as_a_new_round() -> None:
    # Arrange: a ServerApp that sends every message in group "1"
    gate = PolicyGate(NodePolicy(max_rounds=2), FakeClock())
    run = _run()
    gate.admit(run, _message("a", "1"))
    gate.admit(run, _message("b", "1"))

    # Act / Assert
    with pytest.raises(PermissionDeniedError, match="beyond the 2 this node answers"):
        gate.admit(run, _message("c", "1"))


def test_rounds_are_counted_per_run() -> None:
    # Arrange
    gate = PolicyGate(NodePolicy(max_rounds=1), FakeClock())
    gate.admit(_run(1), _message("a", "1"))

    # Act / Assert: another run has rounds of its own
    gate.admit(_run(2), _message("b", "1"))
    with pytest.raises(PermissionDeniedError):
        gate.admit(_run(1), _message("c", "2"))


def test_wall_time_runs_from_the_first_message_of_a_run() -> None:
    # Arrange
    clock = FakeClock()
    gate = PolicyGate(NodePolicy(max_run_seconds=60), clock)
    gate.admit(_run(), _message("a", "1"))

    # Act / Assert
    clock.now += 59
    gate.admit(_run(), _message("b", "2"))
    clock.now += 2
    with pytest.raises(PermissionDeniedError, match=r"\[runs\] max-run-seconds"):
        gate.admit(_run(), _message("c", "3"))


def test_the_node_verifies_the_signatures_itself(tmp_path: Path) -> None:
    # Arrange: a link that passes on a signature over another bundle
    key = SigningKey.create(tmp_path / "k.pem")
    policy = NodePolicy(apps=AppRules(trusted_signers=frozenset({key.public_text})))
    gate = PolicyGate(policy, FakeClock())
    forged = key.sign_bundle("cd" * 32)
    run = _run()
    run.bundle_signatures.add(public_key=forged.public_key, signature=forged.signature)

    # Act / Assert
    with pytest.raises(PermissionDeniedError, match="does not verify"):
        gate.admit(run, _message("a", "1"))
    signed = _run(2)
    good = key.sign_bundle(BUNDLE)
    signed.bundle_signatures.add(public_key=good.public_key, signature=good.signature)
    gate.admit(signed, _message("b", "1"))
