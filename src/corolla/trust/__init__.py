"""Trust: who takes part in a federation, and how they prove it.

A node's identity is an Ed25519 key pair, made on its first start and kept in its state
directory (:class:`NodeKey`); the link knows a node by its public key, written as
``ed25519:`` and the key's 32 bytes in URL-safe base64 (:func:`public_key_text`).
The link keeps the keys an admin registered, and its accounts with their roles, in a
:class:`TrustStore`, and what happened in an :class:`AuditLog`, as a node keeps what it
ran in its own; :func:`verify_audit_log` walks a log's hash chain and names its first
bad record, and :func:`read_audit_log` reads its records.
A node signs each request with its key (:func:`sign_request`, checked by a
:class:`RequestVerifier`), or, once registered, authenticates it with a session key it
agreed on with the link (:class:`SessionOffer`, :func:`accept_session`, :class:`SessionKey`).
An account proves who it is with a token the link signed (:class:`Tokens`), obtained
with its password.

Which nodes may join and which apps may run is a policy, on both sides: the link's
(:class:`LinkPolicy`) and each data owner's node's (:class:`NodePolicy`). An app is
allowed by its bundle's hash, or by a :class:`BundleSignature` of a publisher's
:class:`SigningKey` that the policy trusts.
"""

from ._audit import GENESIS, MAX_RECORD_BYTES, AuditLog, AuditRecord, record_hash
from ._audit_verify import AuditVerdict, BrokenAuditLogError, read_audit_log, verify_audit_log
from ._keys import KEY_PREFIX, NodeKey, public_key_from_text, public_key_text, verify
from ._policy import AppRules, Decision, LinkPolicy, NodePolicy, summarize_error
from ._requests import (
    MAC_KEY,
    NONCE_KEY,
    PUBLIC_KEY_KEY,
    REPLY_ITEM_METHOD,
    SIGNATURE_KEY,
    TIMESTAMP_KEY,
    RequestSignature,
    RequestVerifier,
    request_body,
    sign_request,
    signed_text,
)
from ._sessions import SessionKey, SessionOffer, accept_session
from ._signatures import BundleSignature, SigningKey, bundle_message, check_bundle_hash
from ._store import (
    Account,
    RegisteredKey,
    Role,
    StoredPolicy,
    TrustStore,
    check_account_name,
    hash_password,
    password_matches,
)
from ._tokens import DEFAULT_TOKEN_LIFETIME_S, TokenClaims, Tokens

__all__ = [
    "DEFAULT_TOKEN_LIFETIME_S",
    "GENESIS",
    "MAX_RECORD_BYTES",
    "AuditLog",
    "AuditRecord",
    "AuditVerdict",
    "BrokenAuditLogError",
    "read_audit_log",
    "record_hash",
    "verify_audit_log",
    "KEY_PREFIX",
    "MAC_KEY",
    "NONCE_KEY",
    "PUBLIC_KEY_KEY",
    "REPLY_ITEM_METHOD",
    "SIGNATURE_KEY",
    "TIMESTAMP_KEY",
    "RequestSignature",
    "RequestVerifier",
    "SessionKey",
    "SessionOffer",
    "accept_session",
    "request_body",
    "sign_request",
    "signed_text",
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
    "StoredPolicy",
    "TokenClaims",
    "Tokens",
    "TrustStore",
    "check_account_name",
    "hash_password",
    "password_matches",
    "public_key_from_text",
    "public_key_text",
    "verify",
]
