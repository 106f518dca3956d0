"""A node's policy at work (see :class:`~corolla.trust.NodePolicy`): before a message's
ClientApp runs, and before its run's bundle is even downloaded, the run's app is checked
against the data owner's ``[apps]`` rules, and the run against its ``[runs]`` limits.

The node checks the bundle's signatures itself: what the link says it checked counts for
nothing here. A round of a run is a message group (the strategies send each round's
messages as group ``str(round)``); a message whose group and type the node answered
already starts a round of its own, so that a ServerApp cannot ask for more by sending
one group forever.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable

from corolla.transport import message_pb2, run_pb2
from corolla.trust import BundleSignature, Decision, NodePolicy

__all__ = ["PolicyGate"]

#: Runs whose use of the node the gate remembers.
_RUNS_LIMIT = 1024


@dataclasses.dataclass
class _Usage:
    """What one run asked of the node: since when, and which rounds."""

    first_at: float
    app: Decision
    rounds: int = 0
    groups: set[str] = dataclasses.field(default_factory=set)
    #: The message last counted for each (group, message type).
    answered: dict[tuple[str, str], str] = dataclasses.field(default_factory=dict)
    counted: set[str] = dataclasses.field(default_factory=set)

    def rounds_with(self, metadata: message_pb2.Metadata) -> int:
        """The run's rounds here once ``metadata``'s message counts."""
        if metadata.message_id in self.counted:  # sent again: counted already
            return self.rounds
        key = (metadata.group_id, metadata.message_type)
        new = metadata.group_id not in self.groups or key in self.answered
        return self.rounds + 1 if new else self.rounds

    def count(self, metadata: message_pb2.Metadata, rounds: int) -> None:
        self.rounds = rounds
        self.groups.add(metadata.group_id)
        self.answered[(metadata.group_id, metadata.message_type)] = metadata.message_id
        self.counted.add(metadata.message_id)


class PolicyGate:
    """Admits a node's messages by its policy.

    Parameters
    ----------
    policy
        The data owner's policy.
    clock
        Seconds on a monotonic clock.
    """

    def __init__(self, policy: NodePolicy, clock: Callable[[], float]) -> None:
        self.policy = policy
        self._clock = clock
        self._runs: collections.OrderedDict[int, _Usage] = collections.OrderedDict()

    def admit(self, run: run_pb2.Run, metadata: message_pb2.Metadata) -> None:
        """Let the message in if the policy allows its run's app and the run is within
        its limits; a message let in counts towards the run's rounds.

        Raises
        ------
        PermissionDeniedError
            If the policy refuses, naming the rule.
        """
        usage = self._usage(run)
        usage.app.enforce()
        if self.policy.max_rounds is None and self.policy.max_run_seconds is None:
            return
        rounds = usage.rounds_with(metadata)
        seconds = self._clock() - usage.first_at
        self.policy.check_run(run.run_id, rounds, seconds).enforce()
        usage.count(metadata, rounds)

    def _usage(self, run: run_pb2.Run) -> _Usage:
        usage = self._runs.get(run.run_id)
        if usage is None:
            signatures = [
                BundleSignature(s.public_key, bytes(s.signature)) for s in run.bundle_signatures
            ]
            usage = _Usage(self._clock(), self.policy.check_app(run.bundle_sha256, signatures))
            self._runs[run.run_id] = usage
            if len(self._runs) > _RUNS_LIMIT:
                self._runs.popitem(last=False)
        return usage
