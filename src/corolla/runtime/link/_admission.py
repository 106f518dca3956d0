"""The link's policy at work: which nodes may register and which apps may be submitted
(see :class:`~corolla.trust.LinkPolicy`), each decision recorded in the audit log
(``policy.admitted``, ``policy.refused``, with the rule that decided).

A run's bundle signatures are checked when it is submitted, policy or none: a signature
that does not verify is refused at once, naming its key. Those that do are kept beside
the installed app (``apps/<sha256>.signatures/``, a file per signer), so that the nodes
get them with the run and check them against their own policies.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from corolla.core import ConfigError, PermissionDeniedError
from corolla.transport import run_pb2
from corolla.trust import (
    BundleSignature,
    Decision,
    LinkPolicy,
    public_key_from_text,
    public_key_text,
)

from ._resources import LinkResources

__all__ = [
    "MAX_POLICY_BYTES",
    "admit_app",
    "admit_node",
    "checked_signatures",
    "keep_signatures",
    "kept_signatures",
    "audit_policy",
    "policy_in_force",
    "policy_summary",
    "signatures_to_proto",
]

#: The largest policy an admin may set through the Control API: thousands of bundle
#: hashes and keys.
MAX_POLICY_BYTES = 1024 * 1024

#: Signatures a run may carry: more say nothing more, and each costs a verification.
MAX_SIGNATURES = 16


def policy_summary(policy: LinkPolicy) -> dict[str, object]:
    """What the audit log records of a policy put in force: where it comes from, the
    SHA-256 of its TOML, and its rules in short."""
    return {
        "source": policy.path,
        "sha256": hashlib.sha256(policy.text.encode("utf-8")).hexdigest(),
        "required_attributes": dict(policy.required_attributes),
        "allowed_bundles": len(policy.apps.allowed_bundles),
        "trusted_signers": len(policy.apps.trusted_signers),
    }


def policy_in_force(shared: LinkResources, given: LinkPolicy | None) -> LinkPolicy:
    """The policy a starting link enforces: ``given`` (``corolla link --policy FILE``),
    kept in the trust store in place of the one set before, or else the one last set
    (by an admin, or a start with ``--policy``), or else the built-in one.

    Raises
    ------
    ConfigError
        If the policy kept in the trust store no longer reads (it names who set it).
    """
    if given is not None:
        if given.text:
            shared.trust.set_link_policy(given.text, f"corolla link --policy {given.path}")
            audit_policy(shared, "corolla link", given)
        return given
    stored = shared.trust.link_policy()
    if stored is None:
        return LinkPolicy()
    return LinkPolicy.loads(stored.text, f"set by {stored.set_by}")


def audit_policy(shared: LinkResources, actor: str, policy: LinkPolicy) -> None:
    """Record that ``actor`` put ``policy`` in force (``policy.set``)."""
    shared.audit.record("policy.set", actor, policy_summary(policy))


def _record(shared: LinkResources, decision: Decision, actor: str, data: Mapping[str, str]) -> None:
    kind = "policy.admitted" if decision.allowed else "policy.refused"
    shared.audit.record(kind, actor, {**data, "rule": decision.rule, "reason": decision.reason})


def checked_signatures(
    shared: LinkResources,
    sha256: str,
    proto: Sequence[run_pb2.BundleSignature],
    actor: str,
) -> list[BundleSignature]:
    """The signatures a run was submitted with, each checked over bundle ``sha256``.

    Raises
    ------
    ConfigError
        If there are more than :data:`MAX_SIGNATURES` or a public key is malformed.
    PermissionDeniedError
        If a signature does not verify (recorded as ``policy.refused``).
    """
    if len(proto) > MAX_SIGNATURES:
        raise ConfigError(
            f"the run carries {len(proto)} bundle signatures; the link takes at most "
            f"{MAX_SIGNATURES}"
        )
    signatures = []
    for entry in proto:
        try:
            key = public_key_text(public_key_from_text(entry.public_key))
        except ConfigError as exc:
            raise ConfigError(f"a bundle signature names no Ed25519 key: {exc}") from None
        signature = BundleSignature(key, bytes(entry.signature))
        if not signature.verifies(sha256):
            decision = Decision(
                False,
                "link (bundle signatures)",
                f"the signature by {key} is not a valid signature over bundle {sha256}",
            )
            _record(shared, decision, actor, {"bundle": sha256, "signer": key})
            raise PermissionDeniedError(str(decision))
        signatures.append(signature)
    return signatures


def admit_app(
    shared: LinkResources, sha256: str, signatures: Iterable[BundleSignature], actor: str
) -> None:
    """Let the run of bundle ``sha256`` in if the link's policy allows it; the decision
    goes to the audit log (when the link has a policy, or refuses).

    Raises
    ------
    PermissionDeniedError
        If the policy does not allow the app, naming the rule.
    """
    decision = shared.policy.check_app(sha256, signatures)
    if shared.policy != LinkPolicy() or not decision.allowed:
        _record(shared, decision, actor, {"bundle": sha256})
    decision.enforce()


def admit_node(shared: LinkResources, attributes: Mapping[str, str], node_id: int) -> None:
    """Let a node advertising ``attributes`` register (or rejoin as ``node_id``; 0 for a
    new node) if the link's policy allows it; the decision goes to the audit log (when
    the link has a policy, or refuses).

    Raises
    ------
    PermissionDeniedError
        If its attributes lack or differ from the required ones, naming the rule.
    """
    decision = shared.policy.check_node(attributes)
    if shared.policy != LinkPolicy() or not decision.allowed:
        shown = {key: value[:80] for key, value in list(attributes.items())[:32]}
        actor = f"node {node_id}" if node_id else "a new node"
        _record(shared, decision, actor, {"attributes": json.dumps(shown, sort_keys=True)})
    decision.enforce()


def _signatures_dir(shared: LinkResources, sha256: str) -> Path:
    return shared.apps_dir / f"{sha256}.signatures"


def kept_signatures(shared: LinkResources, sha256: str) -> list[BundleSignature]:
    """The signatures kept for bundle ``sha256``, oldest first (none if unreadable: a
    node then checks the run against its policy without them)."""
    try:
        files = sorted(_signatures_dir(shared, sha256).glob("*.json"), key=_modified)
    except OSError:
        return []
    signatures = []
    for file in files:
        try:
            entry = json.loads(file.read_text(encoding="utf-8"))
            signatures.append(
                BundleSignature(str(entry["public_key"]), bytes.fromhex(entry["signature"]))
            )
        except (OSError, ValueError, TypeError, KeyError):
            continue
    return signatures


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def keep_signatures(
    shared: LinkResources, sha256: str, signatures: Sequence[BundleSignature]
) -> None:
    """Keep ``signatures`` with bundle ``sha256``: one file per signer (the latest
    signature of a key replaces its earlier one), each written atomically, so that runs
    submitted at once with different signers keep them all."""
    if not signatures:
        return
    directory = _signatures_dir(shared, sha256)
    directory.mkdir(parents=True, exist_ok=True)
    for signature in signatures:
        name = hashlib.sha256(signature.public_key.encode()).hexdigest()[:32] + ".json"
        entry = {"public_key": signature.public_key, "signature": signature.signature.hex()}
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                json.dump(entry, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, directory / name)
        finally:
            Path(tmp).unlink(missing_ok=True)


def signatures_to_proto(signatures: Iterable[BundleSignature]) -> list[run_pb2.BundleSignature]:
    """``signatures`` as the wire carries them."""
    return [
        run_pb2.BundleSignature(public_key=s.public_key, signature=s.signature) for s in signatures
    ]
