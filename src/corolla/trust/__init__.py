"""Trust: who takes part in a federation, and how they prove it.

A node's identity is an Ed25519 key pair, made on its first start and kept in its state
directory (:class:`NodeKey`); the link knows a node by its public key, written as
``ed25519:`` and the key's 32 bytes in URL-safe base64 (:func:`public_key_text`).
The link keeps the keys an admin registered, and its accounts with their roles, in a
:class:`TrustStore`, and what happened in an :class:`AuditLog`.

Which nodes may join and which apps may run is a policy, on both sides: the link's
(:class:`LinkPolicy`) and each data owner's node's (:class:`NodePolicy`). An app is
allowed by its bundle's hash, or by a :class:`BundleSignature` of a publisher's
:class:`SigningKey` that the policy trusts.
"""

from ._audit import GENESIS, AuditLog, AuditRecord, record_hash
from ._keys import KEY_PREFIX, NodeKey, public_key_from_text, public_key_text, verify
from ._policy import AppRules, Decision, LinkPolicy, NodePolicy, summarize_error
from ._signatures import BundleSignature, SigningKey, bundle_message, check_bundle_hash
from ._store import (
    Account,
    RegisteredKey,
    Role,
    TrustStore,
    check_account_name,
    hash_password,
    password_matches,
)

__all__ = [
    "GENESIS",
    "AuditLog",
    "AuditRecord",
    "record_hash",
    "KEY_PREFIX",
    "Account",
    "AppRules",
    "BundleSignature",
    "Decision",
    "LinkPolicy",
    "NodePolicy",
    "SigningKey",
    "bundle_message",
    "check_bundle_hash",
    "summarize_error",
    "NodeKey",
    "RegisteredKey",
    "Role",
    "TrustStore",
    "check_account_name",
    "hash_password",
    "password_matches",
    "public_key_from_text",
    "public_key_text",
    "verify",
]
