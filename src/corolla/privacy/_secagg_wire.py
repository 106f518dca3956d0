"""What the server and the nodes of SecAgg+ say to each other: the stages, the names of
their records and entries, and the byte strings both sides derive keys and bind
ciphertexts to.

Every stage is a ``train`` message carrying a :class:`~corolla.core.ConfigRecord` under
:data:`SECAGG_KEY` whose ``stage`` entry names it; the node's :func:`secaggplus_mod`
answers it (only the masked-input stage reaches the ClientApp's train handler).

=============== ============================================ ==================================
stage           the server sends                             the node replies
=============== ============================================ ==================================
``setup``       its neighbours, threshold and encoding       two X25519 public keys
``share-keys``  its neighbours' public keys                  a ciphertext of shares for each
``masked-input`` the training content, shares sent to it     the masked vector (uint32)
``unmask``      which neighbours dropped, which survived     their masking-key / seed shares
``abort``       why it gave the round up                     an error saying so
=============== ============================================ ==================================
"""

from __future__ import annotations

from typing import Any

from ..core import ConfigRecord, MessageError

__all__ = [
    "MASKED_ARRAY",
    "MASKED_KEY",
    "SECAGG_KEY",
    "Stage",
    "associated_data",
    "mask_info",
    "require",
    "share_key_info",
]

#: The ConfigRecord of every stage's message and of the replies but the masked input's.
SECAGG_KEY = "secaggplus"
#: The ArrayRecord of a masked-input reply, and its one array.
MASKED_KEY = "secaggplus-masked"
MASKED_ARRAY = "masked"


class Stage:
    """The stages of a SecAgg+ round, in order."""

    SETUP = "setup"
    SHARE_KEYS = "share-keys"
    MASKED_INPUT = "masked-input"
    UNMASK = "unmask"
    #: Not a stage: the server gave the round up; the node forgets its secrets.
    ABORT = "abort"


def _context(run_id: int, server_round: int) -> bytes:
    return b"%d:%d" % (run_id, server_round)


def share_key_info(run_id: int, server_round: int, sender: int, receiver: int) -> bytes:
    """HKDF ``info`` of the key encrypting the shares ``sender`` sends ``receiver``: one
    key per direction, so the two never encrypt under the same key."""
    return (
        b"corolla secagg+ share key "
        + _context(run_id, server_round)
        + b":%d>%d"
        % (
            sender,
            receiver,
        )
    )


def associated_data(run_id: int, server_round: int, sender: int, receiver: int) -> bytes:
    """What a share ciphertext is bound to: a server relaying it to another node, or in
    another round, makes it fail to decrypt."""
    return (
        b"corolla secagg+ shares "
        + _context(run_id, server_round)
        + b":%d>%d"
        % (
            sender,
            receiver,
        )
    )


def mask_info(run_id: int, server_round: int, a: int, b: int) -> bytes:
    """HKDF ``info`` of the pairwise mask seed of nodes ``a`` and ``b`` (either order)."""
    low, high = min(a, b), max(a, b)
    return (
        b"corolla secagg+ pairwise mask "
        + _context(run_id, server_round)
        + b":%d-%d"
        % (
            low,
            high,
        )
    )


def require(
    record: ConfigRecord, name: str, kind: type | tuple[type, ...], *, many: bool = False
) -> Any:
    """Entry ``name`` of a stage's record, checked to be of ``kind`` (with ``many``, a list
    whose every item is).

    Raises
    ------
    MessageError
        If the entry is missing or of another kind.
    """
    value = record.get(name)
    items = value if many and isinstance(value, list) else [value]
    valid = (not many or isinstance(value, list)) and all(
        isinstance(v, kind) and not isinstance(v, bool) for v in items
    )
    if not valid:
        what = f"list of {getattr(kind, '__name__', kind)}" if many else str(kind)
        raise MessageError(f"the SecAgg+ record lacks a valid {name!r} ({what}), got {value!r}")
    return value
