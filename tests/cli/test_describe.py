"""corolla log's sentences, and its --json lines."""

from __future__ import annotations

import json

import pytest

from corolla.cli._describe import describe, event_json
from corolla.core import Event


@pytest.mark.parametrize(
    ("event", "sentence"),
    [
        (
            Event(
                "round.end",
                1,
                3,
                data={
                    "round": 3,
                    "train": {"train-loss": 0.12345, "num-examples": 80},
                    "evaluate": {"accuracy": 0.9},
                    "train_replies": 4,
                    "train_failures": 1,
                },
            ),
            "round 3 ended: train train-loss 0.1235, evaluate accuracy 0.9 "
            "(4 nodes trained, 1 failed)",
        ),
        (
            Event(
                "reply.error",
                1,
                2,
                node_id=7,
                data={
                    "phase": "train",
                    "code": 1,
                    "reason": "Traceback (most recent call last):\n  ...\nValueError: bad shape",
                },
            ),
            "round 2: node 7 answered train with an error: ValueError: bad shape",
        ),
        (
            Event(
                "run.end",
                1,
                data={
                    "status": "failed",
                    "reason": "the ServerApp exited with status 1:\nTraceback...\nKeyError: 'lr'",
                },
            ),
            "run failed: the ServerApp exited with status 1: KeyError: 'lr'",
        ),
        (Event("run.end", 1, data={"status": "finished", "reason": ""}), "run finished"),
        (
            Event("nodes.waiting", 1, data={"connected": 0, "needed": 2}),
            "waiting for nodes: 0 of 2 connected",
        ),
        (Event("log", 1, data={"line": "[bold]not markup[/bold]"}), "| [bold]not markup[/bold]"),
        (
            Event("round.start", 1, 4, data={"num_rounds": 10}),
            "round 4 of 10 started",
        ),
        (
            Event("reply.missing", 1, 2, node_id=5, data={"phase": "evaluate"}),
            "round 2: node 5 did not reply to evaluate",
        ),
        (
            Event("privacy", 1, 3, data={"epsilon": 1.23456, "delta": 1e-5, "epsilon_budget": 2}),
            "round 3: privacy spent epsilon 1.235 at delta 1e-05 (budget 2)",
        ),
        (
            Event("run.stop", 1, 4, data={"reason": "privacy budget reached: round 4 ..."}),
            "run stopped before round 4: privacy budget reached: round 4 ...",
        ),
    ],
)
def test_events_read_as_sentences(event: Event, sentence: str) -> None:
    text = describe(event)

    assert text.split(" ", 1)[1] == sentence


def test_an_unknown_kind_shows_its_data() -> None:
    text = describe(Event("custom.thing", 1, 2, data={"x": 1}))

    assert text.split(" ", 1)[1] == 'custom.thing round 2 {"x": 1}'


def test_json_lines_have_stable_keys() -> None:
    line = event_json(5, Event("checkpoint", 3, 2, time=10.0))

    assert json.loads(line) == {
        "sequence": 5,
        "run_id": 3,
        "kind": "checkpoint",
        "round": 2,
        "node_id": None,
        "time": 10.0,
        "data": {},
    }
