"""The context a ServerApp or ClientApp runs in."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from ._records import RecordDict

__all__ = ["Context", "UserConfigValue"]

UserConfigValue = bool | int | float | str


@dataclasses.dataclass
class Context:
    """Where an app call runs, and what it keeps between calls.

    Attributes
    ----------
    run_id
        The run this call belongs to.
    node_id
        The node running the call (0 for the ServerApp).
    node_config
        Settings of the node, e.g. ``partition-id`` and ``num-partitions`` in simulation.
    run_config
        The app's config: defaults from its ``pyproject.toml``, overridden per run.
    state
        Records the node keeps across rounds. The runtime persists it; to change it, assign
        a new record dict: ``context.state = context.state | {"momentum": record}``.
    """

    run_id: int
    node_id: int
    node_config: Mapping[str, UserConfigValue]
    run_config: Mapping[str, UserConfigValue]
    state: RecordDict = dataclasses.field(default_factory=RecordDict)
