"""A run's events as sentences, for ``corolla log`` (``--json`` gives them raw): the
sentences live in ``corolla.core``, which the dashboard shares."""

from __future__ import annotations

from ..core import describe_event as describe
from ..core import event_json, gist

__all__ = ["describe", "event_json", "gist"]
