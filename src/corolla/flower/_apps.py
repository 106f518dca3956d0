"""Flower's ClientApp and ServerApp as Corolla apps: the adapters a Flower project's
component references name (``[tool.flwr.app.components]``), and a Corolla app's when a
component is Flower's, applied where the component is loaded, in simulation workers, in a
node's ClientApp process and in the link's ServerApp process alike. They pass Corolla's
own ClientApp and ServerApp through unchanged, so either kind of project mixes the two
frameworks' apps: a Flower ClientApp under a Corolla strategy, a Corolla ClientApp under
a Flower strategy.

A Flower ClientApp gets the message and context converted to Flower's types; the state
it leaves in its context becomes the Corolla context's, which the runtime keeps for the
node's next call. A legacy one (``client_fn``) answers the Message API's ``train`` and
``evaluate`` messages through ``_legacy``'s translation. A Flower ServerApp gets a
:class:`~corolla.flower.FlowerGrid` over the run's grid and the run's context; the last
result its strategies or workflows made (see ``_results``) is the run's result.
"""

from __future__ import annotations

import logging
from typing import Any

from flwr import app as flwr_app
from flwr.clientapp import ClientApp as FlowerClientApp
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.serverapp import ServerApp as FlowerServerApp
from flwr.supercore.task_identity import TaskIdentity

from corolla.client import ClientApp
from corolla.core import AppLoadError, Context, Message, MessageError, RecordDict
from corolla.server import Grid, RunResult, ServerApp

from ._arrays import hold_arrays_flower_records_take
from ._context import context_to_flower
from ._grid import FlowerGrid
from ._legacy import is_legacy, legacy_reply, legacy_request
from ._messages import message_from_flower, message_to_flower
from ._records import record_dict_from_flower
from ._results import flower_results

__all__ = ["FlowerClient", "client_app_adapter", "server_app_adapter"]


class FlowerClient:
    """A Flower ClientApp, called as a Corolla ClientApp."""

    def __init__(self, app: FlowerClientApp) -> None:
        self.app = app
        self._legacy = is_legacy(app)

    def __call__(self, message: Message, context: Context) -> Message:
        """Run the Flower app on ``message`` and return its reply.

        Raises
        ------
        MessageError
            If a legacy app is sent a ``train`` or ``evaluate`` message it cannot read
            (see ``_legacy``), or the app returns something other than a Flower message.
        RecordError
            If the reply or the state holds something Corolla cannot.
        Exception
            Whatever the Flower app raises (``ValueError`` for a message type it does not
            handle).
        """
        request = legacy_request(message) if self._legacy else None
        flower_context = context_to_flower(context)
        sent = message if request is None else request
        answer = self.app(message_to_flower(sent), flower_context)
        if not isinstance(answer, flwr_app.Message):
            raise MessageError(
                f"the Flower ClientApp returned {type(answer).__name__}, not a flwr Message; "
                "return Message(content, reply_to=message)"
            )
        reply = message_from_flower(answer)
        context.state = record_dict_from_flower(flower_context.state)
        if reply.has_error():
            return Message(error=reply.error, reply_to=message)
        if request is None:
            return Message(reply.content, reply_to=message)
        content = legacy_reply(message, reply.content)
        if isinstance(content, RecordDict):
            return Message(content, reply_to=message)
        return Message(error=content, reply_to=message)


def _flower_logs_once() -> None:
    # Flower's logger writes to its own handler, in Flower's format; passed on to the
    # root logger too, each line would appear twice under Corolla's CLI.
    logging.getLogger("flwr").propagate = False


def _with_replies(result: RunResult, grid: FlowerGrid) -> RunResult:
    """The result with the nodes that answered and failed in each round, as the grid
    counted them.

    A batch's round is its group id where that is a number (Flower's legacy workflows
    number rounds so); otherwise (the Message API's strategies leave it empty) the
    batches of each phase are taken as rounds 1, 2, ... in order. A round may send a phase
    in several batches: a legacy ``Server`` asks each client apart, SecAgg+ asks every
    node once per stage. Each node counts once a round: as failed if any of its replies
    was an error, as answered otherwise.
    """
    if result.history is None:
        return result
    seen = {"train": 0, "evaluate": 0}
    nodes: dict[tuple[int, str], tuple[set[int], set[int]]] = {}
    for group, message_type, answered, failed in grid.batches:
        phase = message_type.partition(".")[0]
        if phase not in seen:
            continue
        seen[phase] += 1
        number = int(group) if group.isdigit() else seen[phase]
        ok, errors = nodes.setdefault((number, phase), (set(), set()))
        ok.update(answered)
        errors.update(failed)
    for (number, phase), (ok, errors) in nodes.items():
        summary = result.history.round(number)
        setattr(summary, f"{phase}_replies", len(ok - errors))
        setattr(summary, f"{phase}_failures", len(errors))
    return result


def client_app_adapter(app: Any) -> FlowerClient | ClientApp:
    """A Flower ClientApp as a Corolla ClientApp; a Corolla ClientApp as it is.

    Raises
    ------
    AppLoadError
        If ``app`` is neither a Flower ClientApp nor a Corolla one.
    """
    if isinstance(app, ClientApp):
        return app
    if not isinstance(app, FlowerClientApp):
        raise AppLoadError(
            "a Flower project's clientapp must be a flwr ClientApp or a Corolla ClientApp, "
            f"got {type(app).__name__}"
        )
    _flower_logs_once()
    hold_arrays_flower_records_take()
    return FlowerClient(app)


def server_app_adapter(app: Any) -> ServerApp:
    """A Flower ServerApp as a Corolla ServerApp; a Corolla ServerApp as it is.

    Raises
    ------
    AppLoadError
        If ``app`` is neither a Flower ServerApp nor a Corolla one.
    """
    if isinstance(app, ServerApp):
        return app
    if not isinstance(app, FlowerServerApp):
        raise AppLoadError(
            "a Flower project's serverapp must be a flwr ServerApp or a Corolla ServerApp, "
            f"got {type(app).__name__}"
        )

    _flower_logs_once()
    hold_arrays_flower_records_take()

    def main(grid: Grid, context: Context) -> None:
        # Flower stamps the messages a ServerApp creates with its process's task identity.
        TaskIdentity.task_id = 1
        TaskIdentity.run_id = grid.run_id
        TaskIdentity.node_id = SUPERLINK_NODE_ID
        flower_grid = FlowerGrid(grid, context.run_config)
        with flower_results() as results:
            app(flower_grid, context_to_flower(context))
        if results:
            grid.report_result(_with_replies(results[-1], flower_grid))

    return ServerApp(main)
