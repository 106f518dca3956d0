"""The limits and timings of a link, in one object it is given.

Every figure here bounds what the link holds or how long it waits. They are fields of
:class:`LinkLimits` rather than module constants so that a deployment can set them and a
test can make a grace period short or a slot scarce without patching modules.
"""

from __future__ import annotations

import dataclasses
import math

from corolla.core import ConfigError
from corolla.state import DEFAULT_HEARTBEAT_INTERVAL

__all__ = ["LinkLimits"]


@dataclasses.dataclass(frozen=True)
class LinkLimits:
    """How much a link holds at once and how long it waits.

    Raises
    ------
    ConfigError
        If a figure is not a finite positive number (counts: a positive integer).
    """

    #: Seconds between the heartbeats nodes are told to send.
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    #: Seconds between sweeps for silent nodes and expired messages.
    sweep_interval: float = 1.0
    #: Array streams moved at once: downloads (with bundles) and uploads. Each holds
    #: some of the link's memory while it moves: a download a few 4 MiB chunks, an upload
    #: gRPC's flow-control window as well (tens of MB once gRPC's bandwidth probing has
    #: grown it on a fast network), so when many nodes pull or push a large model
    #: together the others wait for a slot, and the link's memory does not grow with the
    #: number of nodes. The link's two cores and its disk are busy with fewer streams.
    download_streams: int = 8
    upload_streams: int = 4
    #: Longest ``StatArrays`` waits for an upload slot to set aside for the node's upload,
    #: and how long a slot set aside waits for that upload.
    slot_wait_s: float = 30.0
    slot_kept_s: float = 30.0
    #: Longest a ``PushArrays`` upload waits for its next chunk.
    chunk_wait_s: float = 120.0
    #: Seconds during which a blob a client was told of is not collected (``_names``).
    named_grace_s: float = 120.0
    #: Seconds without array transfers after which the link hands the free memory of its
    #: heaps back to the system. glibc keeps it for the next chunks (see
    #: ``corolla.tuning``), which a round needs again at once, but a link idle between
    #: runs need not hold hundreds of MB of them. While transfers go on, handing memory
    #: back would cost its faulting in again.
    idle_trim_s: float = 10.0
    #: Threads for the blocking work of the Fleet server's handlers (state transactions,
    #: blob writes). Its streams hold none, so this bounds the work in flight, not the
    #: nodes: a thousand nodes replying at once queue here, and their replies share
    #: commits.
    fleet_workers: int = 32
    #: Threads writing uploads (PushArrays) to the blob store, each for as long as its
    #: client sends; more uploads at once wait for one.
    fleet_upload_workers: int = 16
    #: Threads per synchronous gRPC server (Control, ServerAppIo): each open event or
    #: reply stream holds one.
    control_workers: int = 256
    #: Seconds the calls in flight get to finish when the link stops.
    stop_grace_s: float = 2.0
    #: Bytes (serialized) of a node's attributes, of its node config, and of a run's
    #: config: settings, not data.
    max_config_bytes: int = 64 * 1024
    #: With auth: how far (either way) from the link's clock a node's request may have
    #: been signed. Older is a delayed or replayed request (or a node's clock that is off).
    request_max_age_s: float = 60.0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.type == "int":
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    raise ConfigError(f"{field.name} must be a positive integer, got {value!r}")
            elif (
                not isinstance(value, int | float)
                or isinstance(value, bool)
                or not math.isfinite(value)
                or value <= 0
            ):
                raise ConfigError(
                    f"{field.name} must be a finite number of seconds above 0, got {value!r}"
                )
