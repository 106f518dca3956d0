"""What the link's services share: its state, blobs, wake-ups, traffic meter and the
objects built on them."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from corolla.state import BlobStore, LinkState
from corolla.telemetry import Tracing
from corolla.trust import AuditLog, LinkPolicy, TrustStore

from .._clock import Clock, SystemClock
from ._contents import MessageContents
from ._limits import LinkLimits
from ._names import NamedBlobs
from ._replaced import ReplacedCheckpoints
from ._run_ends import RunEnds
from ._traffic import TrafficMeter
from ._wakeups import Signals

__all__ = ["LinkResources"]


@dataclasses.dataclass
class LinkResources:
    """The link's state and blobs, and what its Fleet, Control and ServerAppIo services
    and its collections build on them.

    Build one with :meth:`create`.
    """

    state: LinkState
    blobs: BlobStore
    signals: Signals
    apps_dir: Path
    limits: LinkLimits
    clock: Clock
    #: The array bytes the services move each way (see ``_traffic``).
    traffic: TrafficMeter
    #: The names clients hold on blobs (see ``_names``).
    names: NamedBlobs
    #: Message contents in and out (see ``_contents``).
    contents: MessageContents
    #: Checkpoint records replaced by newer ones, to collect.
    replaced: ReplacedCheckpoints
    #: The nodes to tell that a run ended (see ``_run_ends``).
    run_ends: RunEnds
    #: Where what happened is recorded, hash-chained (runs, nodes, logins, decisions).
    audit: AuditLog
    #: The accounts and registered node keys.
    trust: TrustStore
    #: Whether nodes must sign their requests with a registered key, and Control callers
    #: present an account's token.
    auth: bool = False
    #: The federation this link serves: tokens name it, and are refused by other links.
    federation: str = "default"
    #: Which nodes may register and which apps may run (see ``_admission``).
    policy: LinkPolicy = dataclasses.field(default_factory=LinkPolicy)

    @classmethod
    def create(
        cls,
        state: LinkState,
        blobs: BlobStore,
        apps_dir: Path,
        limits: LinkLimits | None = None,
        clock: Clock | None = None,
        *,
        audit: AuditLog | None = None,
        trust: TrustStore | None = None,
        auth: bool = False,
        federation: str = "default",
        policy: LinkPolicy | None = None,
        tracing: Tracing | None = None,
    ) -> LinkResources:
        limits = limits or LinkLimits()
        clock = clock or SystemClock()
        names = NamedBlobs(blobs, limits.named_grace_s, clock.monotonic)
        signals = Signals()
        return cls(
            state=state,
            blobs=blobs,
            signals=signals,
            apps_dir=apps_dir,
            limits=limits,
            clock=clock,
            traffic=TrafficMeter(clock.monotonic),
            names=names,
            contents=MessageContents(blobs, names, tracing=tracing),
            replaced=ReplacedCheckpoints(),
            run_ends=RunEnds(signals),
            # By default beside the apps, in the link's state directory.
            audit=audit or AuditLog(apps_dir.parent / AuditLog.FILE, clock=clock.time),
            trust=trust or TrustStore(apps_dir.parent / TrustStore.FILE, clock=clock.time),
            auth=auth,
            federation=federation,
            policy=policy or LinkPolicy(),
        )

    def redact(self, text: str) -> str:
        """``text`` with the link's own paths left out, for error details that reach
        callers: an installed app reads ``<bundle 1a2b3c4d5e6f>``, the state directory
        ``<link state>``."""
        apps = str(self.apps_dir)
        text = re.sub(re.escape(apps) + r"/([0-9a-f]{12})[0-9a-f]*", r"<bundle \1>", text)
        # Only the directory itself: a sibling such as ``link-policy.toml`` stays whole.
        state = re.escape(str(self.apps_dir.parent))
        return re.sub(state + r"(?![\w.-])", "<link state>", text)
