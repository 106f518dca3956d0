"""A legacy Flower ClientApp (``ClientApp(client_fn=...)``, a ``NumPyClient`` or ``Client``)
answering the Message API's ``train`` and ``evaluate`` messages, which Corolla's strategies
and Flower's ``flwr.serverapp.strategy`` send.

Such an app reads only the records Flower's legacy server writes (``fitins.parameters``
and ``fitins.config``; ``evaluateins.*`` to evaluate) and replies with legacy records
(``fitres.*``, ``evaluateres.*``). A ``train`` or ``evaluate`` message without them is
translated on the way in: its one ArrayRecord becomes the parameters, in order (legacy
parameters have no names), and its ConfigRecord, if any, the config. The reply is
translated back into what the Message API's strategies read:

- ``train``: the updated arrays, as an ArrayRecord of the request's name with the
  request's array names (when the client returns as many arrays; otherwise Flower's
  ``"0"``, ``"1"``, ... which an aggregator rejects, naming them), and a ``"metrics"``
  MetricRecord with ``num-examples`` and the client's metrics;
- ``evaluate``: a ``"metrics"`` MetricRecord with ``loss``, ``num-examples`` and the
  client's metrics.

Only the client's int and float metrics are kept (a MetricRecord holds no others). A
client that reports a status other than OK (a ``Client`` may; a ``NumPyClient`` cannot)
replies with that status as an error. A message with the legacy records, from Flower's
legacy workflows, goes to the app as it is, and so does one without arrays (the stages of
Flower's SecAgg+ workflow, read by its ``secaggplus_mod`` before the client).
"""

from __future__ import annotations

from typing import Any

from flwr.clientapp import ClientApp as FlowerClientApp

from corolla.core import (
    ArrayRecord,
    ConfigRecord,
    Error,
    ErrorCode,
    Message,
    MessageError,
    MessageType,
    MetricRecord,
    RecordDict,
)

__all__ = ["is_legacy", "legacy_reply", "legacy_request"]

#: The legacy records' prefixes, by message type: (the request's, the reply's).
_PREFIXES = {
    MessageType.TRAIN: ("fitins", "fitres"),
    MessageType.EVALUATE: ("evaluateins", "evaluateres"),
}
#: The record a Message API reply's metrics go in, as Corolla's and Flower's apps name it.
METRICS = "metrics"
#: The metric that weighs a reply, as Corolla's and Flower's strategies read it.
NUM_EXAMPLES = "num-examples"
#: Flower's ``Code.OK`` of a legacy reply's status.
_STATUS_OK = 0


def is_legacy(app: FlowerClientApp) -> bool:
    """True if ``app`` was built from a ``client_fn``."""
    # Flower keeps no public mark of it: its ClientApp holds a ``_call`` only then
    # (flwr 1.41 and 1.42).
    return getattr(app, "_call", None) is not None


def legacy_request(message: Message) -> Message | None:
    """``message`` with the records a legacy ClientApp reads, or None if it needs none:
    its type is not ``train`` or ``evaluate``, it already holds the legacy records, or it
    holds no arrays (a message for the ClientApp's mods, such as SecAgg+'s stages).

    Raises
    ------
    MessageError
        If the message holds other than one ArrayRecord, or more than one ConfigRecord.
    """
    prefixes = _PREFIXES.get(message.metadata.message_type)
    if (
        prefixes is None
        or f"{prefixes[0]}.parameters" in message.content
        or not message.content.array_records
    ):
        return None
    arrays, config = _arrays_and_config(message.content)
    content = RecordDict({f"{prefixes[0]}.parameters": arrays, f"{prefixes[0]}.config": config})
    return Message(content, metadata=message.metadata)


def legacy_reply(request: Message, content: RecordDict) -> RecordDict | Error:
    """The Message API content of a legacy ClientApp's reply ``content`` to ``request``
    (the message before :func:`legacy_request`), or the error its status reports.

    Raises
    ------
    MessageError
        If the reply lacks a record the legacy client always writes.
    """
    message_type = request.metadata.message_type
    _, prefix = _PREFIXES[message_type]
    status = _record(content, f"{prefix}.status", ConfigRecord)
    if status.get("code") != _STATUS_OK:
        reason = f"the legacy client's status is {status.get('code')}: {status.get('message')}"
        return Error(int(ErrorCode.CLIENT_APP_RAISED), reason)
    metrics = _numbers(_record(content, f"{prefix}.metrics", ConfigRecord))
    examples = _record(content, f"{prefix}.num_examples", MetricRecord)
    metrics[NUM_EXAMPLES] = examples["num_examples"]
    if message_type == MessageType.EVALUATE:
        metrics["loss"] = _record(content, f"{prefix}.loss", MetricRecord)["loss"]
        return RecordDict({METRICS: MetricRecord(metrics)})
    name, sent = next(iter(request.content.array_records.items()))
    updated = _record(content, f"{prefix}.parameters", ArrayRecord)
    if len(updated) == len(sent):
        updated = ArrayRecord(zip(sent, updated.values(), strict=True))
    return RecordDict({name: updated, METRICS: MetricRecord(metrics)})


def _arrays_and_config(content: RecordDict) -> tuple[ArrayRecord, ConfigRecord]:
    arrays = list(content.array_records.values())
    configs = list(content.config_records.values())
    if len(arrays) != 1 or len(configs) > 1:
        raise MessageError(
            "a legacy Flower ClientApp takes a train or evaluate message with one ArrayRecord "
            f"and at most one ConfigRecord, got {len(arrays)} and {len(configs)}"
        )
    return arrays[0], configs[0] if configs else ConfigRecord()


def _record(content: RecordDict, name: str, kind: type[Any]) -> Any:
    record = content.get(name)
    if not isinstance(record, kind):
        raise MessageError(f"a legacy Flower ClientApp's reply has no {kind.__name__} {name!r}")
    return record


def _numbers(config: ConfigRecord) -> dict[str, Any]:
    return {
        name: value
        for name, value in config.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
