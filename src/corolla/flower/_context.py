"""Contexts: a Flower ``Context`` <-> a Corolla :class:`~corolla.core.Context`.

Run id, node id, node config, run config and state match one to one. A Flower ClientApp
keeps what it learns across rounds in ``context.state``; running one, Corolla converts the
node's context in, runs the app, and converts the context back, so the state the app left
is what the node keeps. The configs are copied (Flower's are mutable dicts); Flower's
``series_id`` has no Corolla counterpart: it is 0 on the way in and dropped on the way out.
"""

from __future__ import annotations

from flwr import app as flwr_app

from corolla.core import Context, RecordError

from ._records import record_dict_from_flower, record_dict_to_flower

__all__ = ["context_from_flower", "context_to_flower"]


def context_from_flower(context: flwr_app.Context) -> Context:
    """A Corolla :class:`~corolla.core.Context` with a Flower context's ids, configs and
    state (arrays viewed, not copied).

    Raises
    ------
    RecordError
        If the state holds something Corolla cannot (see :mod:`corolla.flower`).
    """
    try:
        state = record_dict_from_flower(context.state)
    except RecordError as exc:
        raise RecordError(f"Flower context state: {exc}") from exc
    return Context(
        run_id=int(context.run_id),
        node_id=int(context.node_id),
        node_config=dict(context.node_config),
        run_config=dict(context.run_config),
        state=state,
    )


def context_to_flower(context: Context) -> flwr_app.Context:
    """A Flower ``Context`` with a Corolla context's ids, configs and state (each array
    copied once, into Flower's bytes)."""
    return flwr_app.Context(
        run_id=context.run_id,
        node_id=context.node_id,
        node_config=dict(context.node_config),
        state=record_dict_to_flower(context.state),
        run_config=dict(context.run_config),
    )
