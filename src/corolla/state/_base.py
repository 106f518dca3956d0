"""LinkState: the durable state of a ``corolla link``, one interface for every backend.

Every method is atomic and, when it changes state, durable before it returns: what the
link acknowledges to a node or a user survives a crash. Every method is safe to call from
several threads at once. Times come from the backend's injected clock (seconds since the
epoch), never from the caller, so tests jump time forward instead of sleeping.

Messages flow in two directions. The ServerApp's messages to nodes are *instructions*:
stored with :meth:`~LinkState.store_messages`, handed out once by
:meth:`~LinkState.fetch_messages`, answered by :meth:`~LinkState.store_reply`. Each
instruction gets at most one reply, and always eventually one: when its TTL passes
(:meth:`~LinkState.expire_messages`), its node goes offline
(:meth:`~LinkState.mark_stale_nodes_offline`) or its run ends, the link stores an error
reply itself, so a ServerApp waiting in :meth:`~LinkState.get_replies` is never left hanging.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import TypeVar

from corolla.core import CorollaError, Event, UserConfigValue

from ._types import (
    Checkpoint,
    DeliveryStatus,
    EventEntry,
    NodeIdentity,
    NodeInfo,
    RunInfo,
    RunStatus,
    StoredMessage,
)

__all__ = ["DEFAULT_HEARTBEAT_INTERVAL", "DEFAULT_HEARTBEAT_TOLERANCE", "LinkState"]

_S = TypeVar("_S", bound="LinkState")

#: Seconds between a node's heartbeats unless it says otherwise.
DEFAULT_HEARTBEAT_INTERVAL = 30.0

#: A node is offline once ``interval * tolerance`` seconds passed since its last heartbeat:
#: one late heartbeat is jitter, two missed ones are a lost node.
DEFAULT_HEARTBEAT_TOLERANCE = 2.5


class LinkState(abc.ABC):
    """Nodes, runs, messages, events and checkpoints of one link.

    A context manager: leaving the ``with`` block closes the store.
    """

    # -- nodes -------------------------------------------------------------------------

    @abc.abstractmethod
    def register_node(
        self,
        *,
        attributes: Mapping[str, str] | None = None,
        node_config: Mapping[str, UserConfigValue] | None = None,
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        identity: NodeIdentity | None = None,
    ) -> NodeIdentity:
        """Register a node, online from now, and return its identity.

        Without ``identity`` a new node is created with a fresh random id and token; the
        token is returned only here, so the node must keep it. With ``identity`` (a node
        restarting) the same node comes back online, with the attributes, config and
        interval given now, and the same identity is returned.

        Raises
        ------
        UnknownNodeError
            If ``identity`` names no node.
        NodeAuthenticationError
            If ``identity``'s token is not the node's.
        ConfigError
            If attributes, config or interval are invalid.
        """

    @abc.abstractmethod
    def authenticate_node(self, node_id: int, token: str) -> NodeInfo:
        """Check a node's token (per request) and return the node.

        Raises
        ------
        UnknownNodeError
            If no node has ``node_id``.
        NodeAuthenticationError
            If ``token`` is not the node's.
        """

    @abc.abstractmethod
    def heartbeat(self, node_id: int, heartbeat_interval: float | None = None) -> None:
        """Record that a node is alive now; it is online again if it had been marked offline.

        ``heartbeat_interval`` replaces the node's interval when given.

        Raises
        ------
        UnknownNodeError
            If no node has ``node_id``.
        ConfigError
            If ``heartbeat_interval`` is not a positive number.
        """

    def heartbeat_many(self, node_ids: Iterable[int]) -> dict[int, CorollaError | None]:
        """:meth:`heartbeat` for each of ``node_ids`` (repeats counted once), in one
        transaction where the store can: node id -> None, or the error its heartbeat
        raised (:class:`UnknownNodeError`)."""
        beats: dict[int, CorollaError | None] = {}
        for node_id in node_ids:
            if node_id not in beats:
                try:
                    self.heartbeat(node_id)
                    beats[node_id] = None
                except CorollaError as exc:
                    beats[node_id] = exc
        return beats

    @abc.abstractmethod
    def mark_stale_nodes_offline(self, tolerance: float = DEFAULT_HEARTBEAT_TOLERANCE) -> list[int]:
        """Mark offline every online node silent for more than ``interval * tolerance``.

        Their pending and delivered messages are answered with ``NODE_UNAVAILABLE`` error
        replies (status ``failed``). Returns the ids of the nodes marked, in increasing order.

        Raises
        ------
        ConfigError
            If ``tolerance`` is not a positive number.
        """

    @abc.abstractmethod
    def mark_node_offline(self, node_id: int) -> None:
        """Mark a node offline now (it said goodbye), answering its messages as above.

        Raises
        ------
        UnknownNodeError
            If no node has ``node_id``.
        """

    @abc.abstractmethod
    def get_node(self, node_id: int) -> NodeInfo:
        """The node with ``node_id``.

        Raises
        ------
        UnknownNodeError
            If there is none.
        """

    @abc.abstractmethod
    def list_nodes(
        self, *, online: bool | None = None, attributes: Mapping[str, str] | None = None
    ) -> list[NodeInfo]:
        """Nodes in increasing id order, optionally only those online (or offline) and those
        whose attributes include every ``key: value`` of ``attributes``."""

    # -- runs --------------------------------------------------------------------------

    @abc.abstractmethod
    def create_run(
        self, bundle_hash: str, run_config: Mapping[str, UserConfigValue] | None = None
    ) -> RunInfo:
        """Create a ``pending`` run of the app bundle with sha256 ``bundle_hash``.

        Raises
        ------
        InvalidBlobHashError
            If ``bundle_hash`` is not a sha256 hex digest.
        ConfigError
            If ``run_config`` maps anything but non-empty strings to bool, int, finite
            float or str.
        """

    @abc.abstractmethod
    def get_run(self, run_id: int) -> RunInfo:
        """The run with ``run_id``.

        Raises
        ------
        UnknownRunError
            If there is none.
        """

    @abc.abstractmethod
    def list_runs(self, *, status: RunStatus | None = None) -> list[RunInfo]:
        """Runs, oldest first, optionally only those with ``status``."""

    @abc.abstractmethod
    def update_run_status(
        self, run_id: int, status: RunStatus, *, error: str | None = None
    ) -> RunInfo:
        """Move a run to ``status`` along :data:`RUN_TRANSITIONS` and return it.

        ``error`` says why a run failed or was stopped. Ending a run answers its pending
        and delivered messages with ``MESSAGE_UNAVAILABLE`` error replies, so nodes no
        longer receive them and its ServerApp is not left waiting.

        Raises
        ------
        UnknownRunError
            If no run has ``run_id``.
        RunStatusError
            If the run's current status cannot move to ``status``; the message names both
            and the legal next statuses. Two racing updates: exactly one wins.
        """

    # -- messages ----------------------------------------------------------------------

    @abc.abstractmethod
    def store_messages(self, messages: Iterable[StoredMessage]) -> list[str]:
        """Store instructions for nodes, all or none, and return their message ids.

        An empty ``message_id`` gets a fresh one; a zero ``created_at`` becomes now. A
        message is deliverable until ``created_at + ttl``. A message to a node that is
        offline is answered at once with a ``NODE_UNAVAILABLE`` error reply.

        Raises
        ------
        UnknownRunError
            If a message's run does not exist (the error names the id).
        UnknownNodeError
            If a message's destination node does not exist (the error names the id).
        RunStatusError
            If a message's run has ended.
        MessageError
            If a message is a reply (has ``reply_to_message_id``), carries an error
            instead of content, or reuses an existing message id.
        """

    @abc.abstractmethod
    def fetch_messages(self, node_id: int, *, limit: int | None = None) -> list[StoredMessage]:
        """Hand out up to ``limit`` pending, unexpired messages for a node, oldest first,
        marking them delivered in the same transaction: a message is handed out once, however
        many callers pull for the node at the same time.

        Raises
        ------
        UnknownNodeError
            If no node has ``node_id``.
        ConfigError
            If ``limit`` is not a positive int.
        """

    def fetch_messages_many(
        self, node_ids: Iterable[int]
    ) -> dict[int, list[StoredMessage] | CorollaError]:
        """:meth:`fetch_messages` for each of ``node_ids`` (repeats counted once), in one
        transaction where the store can: node id -> its messages, or the error that
        fetching them raised (:class:`UnknownNodeError`, ...)."""
        fetched: dict[int, list[StoredMessage] | CorollaError] = {}
        for node_id in node_ids:
            if node_id not in fetched:
                try:
                    fetched[node_id] = self.fetch_messages(node_id)
                except CorollaError as exc:
                    fetched[node_id] = exc
        return fetched

    @abc.abstractmethod
    def store_reply(self, reply: StoredMessage) -> str:
        """Store a node's reply to a delivered message, durably, and return its id.

        The reply's ``reply_to_message_id`` names the instruction; its ``run_id`` and
        ``src_node_id`` must be the instruction's run and destination, its message type
        the instruction's. An empty ``message_id`` gets a fresh one.

        Replies are idempotent: storing again a reply with the same content hash and error
        as the one stored (a transport retrying after a lost acknowledgement) returns the
        stored reply's id and changes nothing. Any other second answer is rejected.

        Raises
        ------
        UnknownMessageError
            If no message of the reply's run has that id.
        ReplyRejectedError
            If the message was sent to another node, has a different message type, was
            not delivered yet, is past its TTL, already has a different reply, or was
            answered by the link with an error (expired, node offline, run ended).
        MessageError
            If ``reply_to_message_id`` is empty, or ``message_id`` is taken.
        """

    def store_replies(self, replies: Sequence[StoredMessage]) -> list[str | CorollaError]:
        """:meth:`store_reply` for each reply, durably, in one commit where the store
        can: in order, each reply's id, or the error that storing it raised."""
        stored: list[str | CorollaError] = []
        for reply in replies:
            try:
                stored.append(self.store_reply(reply))
            except CorollaError as exc:
                stored.append(exc)
        return stored

    @abc.abstractmethod
    def get_replies(self, run_id: int, message_ids: Iterable[str]) -> list[StoredMessage]:
        """The replies stored so far to messages ``message_ids`` of run ``run_id``, in the
        order they were stored. Reading changes nothing, so a caller may read again.

        Raises
        ------
        UnknownRunError
            If no run has ``run_id``.
        UnknownMessageError
            If a message id is not a message of that run (the error names it).
        MessageError
            If a message was released (:meth:`release_messages`): its reply is gone.
        """

    @abc.abstractmethod
    def replies_since(self, run_id: int, cursor: int = 0) -> tuple[list[StoredMessage], int]:
        """The replies of run ``run_id`` stored after ``cursor``, in the order stored, and
        the cursor to pass next time for only newer ones.

        Cursor 0 is before the first reply; :meth:`reply_cursor` is after the last one
        stored so far. A ServerApp waiting for a round's replies reads each once this
        way, where :meth:`get_replies` would read every one of them on every wake-up.

        Raises
        ------
        UnknownRunError
            If no run has ``run_id``.
        ConfigError
            If ``cursor`` is not an int >= 0.
        """

    @abc.abstractmethod
    def reply_cursor(self) -> int:
        """The cursor after the last reply stored so far, of any run (see
        :meth:`replies_since`)."""

    @abc.abstractmethod
    def message_status(self, message_id: str) -> DeliveryStatus:
        """The delivery status of an instruction.

        Raises
        ------
        UnknownMessageError
            If no instruction has ``message_id``.
        """

    @abc.abstractmethod
    def abandon_run_messages(self, run_id: int, reason: str) -> list[str]:
        """End every pending or delivered message of run ``run_id`` (status ``failed``) with
        an error reply ``MESSAGE_UNAVAILABLE`` carrying ``reason``, and return their ids:
        what a restarted link does with the messages of a ServerApp that died with its
        predecessor, before the run's new ServerApp sends its own. Replies already stored
        stay.

        Raises
        ------
        UnknownRunError
            If no run has ``run_id``.
        """

    @abc.abstractmethod
    def expire_messages(self) -> list[str]:
        """End every pending or delivered message past ``created_at + ttl`` (status
        ``expired``) with an error reply: ``MESSAGE_UNAVAILABLE`` if it was never delivered,
        ``REPLY_UNAVAILABLE`` if its node did not answer in time. Returns their ids."""

    # -- events ------------------------------------------------------------------------

    @abc.abstractmethod
    def append_events(self, events: Iterable[Event]) -> list[int]:
        """Append events, all or none, and return their sequence numbers (increasing, never
        reused). ``run_id`` 0 marks an event of the link itself (a node joined or left).

        Raises
        ------
        UnknownRunError
            If an event names a run that does not exist.
        ConfigError
            If an event's data cannot be stored as JSON.
        """

    def append_event(self, event: Event) -> int:
        """Append one event and return its sequence number; see :meth:`append_events`."""
        return self.append_events([event])[0]

    @abc.abstractmethod
    def read_events(
        self, run_id: int, *, after: int = 0, limit: int | None = None, kind: str | None = None
    ) -> list[EventEntry]:
        """Events of run ``run_id`` with a sequence number above ``after``, in order: follow
        a log by passing the last ``seq`` seen. With ``kind``, only events of that kind.

        Raises
        ------
        UnknownRunError
            If ``run_id`` is neither 0 nor a run.
        ConfigError
            If ``limit`` is not a positive int.
        """

    # -- what a run stored -------------------------------------------------------------

    @abc.abstractmethod
    def run_contents(
        self, run_id: int, *, released: bool = True
    ) -> Iterator[tuple[str, bytes | None]]:
        """The contents of the run's messages and replies, each content once: its hash, and
        its bytes where a reply keeps them in its row (None: the content is the blob of
        that hash). Read lazily; consume it promptly.

        With ``released=False``, only the contents of messages not released (see
        :meth:`release_messages`) and of their replies: what a live run may still read.

        Raises
        ------
        UnknownRunError
            If no run has ``run_id``.
        """

    @abc.abstractmethod
    def release_messages(
        self, run_id: int, message_ids: Iterable[str]
    ) -> list[tuple[str, bytes | None]]:
        """Record that run ``run_id``'s ServerApp is done with these messages and their
        replies; return the contents (as :meth:`run_contents` gives them, each once) of
        those this call released, so that the caller can delete what only they named
        (and then :meth:`drop_released_contents`).

        :meth:`get_replies` refuses released messages. Releasing a message again does
        nothing. All or nothing: an unknown id releases none.

        Raises
        ------
        UnknownRunError
            If no run has ``run_id``.
        UnknownMessageError
            If a message id is not a message of that run (the error names it).
        MessageError
            If ``message_ids`` is a single str.
        """

    @abc.abstractmethod
    def drop_released_contents(self, run_id: int, message_ids: Iterable[str]) -> int:
        """Drop the contents that the replies to those of these messages of run ``run_id``
        that are released keep in their rows; return how many were dropped.

        A short write of its own, apart from :meth:`release_messages`: freeing a thousand
        rows' contents takes a while, and other writers go between two calls.

        Raises
        ------
        UnknownRunError
            If no run has ``run_id``.
        MessageError
            If ``message_ids`` is a single str.
        """

    @abc.abstractmethod
    def clear_reply_contents(self, run_id: int) -> int:
        """Drop the contents that an ended run's replies keep in their rows; return how
        many were dropped. The replies' metadata and errors stay.

        Raises
        ------
        UnknownRunError
            If no run has ``run_id``.
        RunStatusError
            If the run has not ended.
        """

    # -- checkpoints -------------------------------------------------------------------

    @abc.abstractmethod
    def save_checkpoint(self, run_id: int, round: int, blob_hash: str) -> Checkpoint:
        """Make the checkpoint in blob ``blob_hash`` the run's latest, replacing the previous
        one atomically (a crash leaves either the old or the new one, never neither).

        Saving the same round again (a resumed run) replaces it.

        Raises
        ------
        UnknownRunError
            If no run has ``run_id``.
        InvalidBlobHashError
            If ``blob_hash`` is not a sha256 hex digest.
        ConfigError
            If ``round`` is negative or older than the saved checkpoint's round.
        """

    @abc.abstractmethod
    def load_checkpoint(self, run_id: int) -> Checkpoint | None:
        """The run's latest checkpoint, or None if it has none.

        Raises
        ------
        UnknownRunError
            If no run has ``run_id``.
        """

    # -- lifecycle ---------------------------------------------------------------------

    @abc.abstractmethod
    def close(self) -> None:
        """Release the store; later calls raise :class:`StorageError`. Idempotent."""

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
