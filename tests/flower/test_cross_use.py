"""Flower's and Corolla's apps mixed: a Flower ClientApp (Message API or a legacy
``NumPyClient``) under a Corolla strategy, Corolla ClientApps under a Flower strategy,
and a Flower ServerApp's custom message types, queries, state and error replies, through
Corolla's simulation, its command line and a link with nodes.

Every node's update is ``SHRINK * arrays + (partition-id + 1)``, weighed by
partition-id + 1, so FedAvg's model after each round is known in closed form.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from flwr import app as flwr_app
from flwr.common.constant import ErrorCode as FlowerErrorCode
from flwr.serverapp import ServerApp as FlowerServerApp
from flwr.serverapp.strategy import FedAvg as FlowerFedAvg

from corolla.flower import client_app_adapter, server_app_adapter
from corolla.project import AppConfig
from corolla.simulation import SimulationResult, run_simulation

from ..runtime.test_e2e import Processes
from . import cross_use_apps
from .corpus import run_on_link, start_deployment
from .cross_use_apps import SHRINK

ROUNDS = 3
INITIAL = {"w": np.zeros(3), "b": np.ones(2, dtype=np.float32)}

#: Sources of the modules the test projects are written with.
COROLLA_SERVER = """
import numpy as np
from corolla.core import ArrayRecord
from corolla.server import ServerApp
from corolla.strategy import FedAvg

app = ServerApp()


@app.main()
def main(grid, context):
    initial = ArrayRecord({"w": np.zeros(3), "b": np.ones(2, dtype=np.float32)})
    FedAvg(seed=0).start(grid, initial, num_rounds=int(context.run_config["num-server-rounds"]))
"""
FLOWER_CLIENT = f"""
from flwr.app import Array, ArrayRecord, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

app = ClientApp()


@app.train()
def train(message, context):
    partition = int(context.node_config["partition-id"])
    arrays = ArrayRecord(
        {{
            name: Array({SHRINK} * array.numpy() + (partition + 1))
            for name, array in message.content["arrays"].items()
        }}
    )
    metrics = MetricRecord({{"num-examples": partition + 1}})
    return Message(RecordDict({{"arrays": arrays, "metrics": metrics}}), reply_to=message)


@app.evaluate()
def evaluate(message, context):
    loss = sum(float(a.numpy().sum()) for a in message.content["arrays"].values())
    metrics = MetricRecord({{"loss": loss, "num-examples": 1}})
    return Message(RecordDict({{"metrics": metrics}}), reply_to=message)
"""
FLOWER_NUMPY_CLIENT = f"""
from flwr.client import NumPyClient
from flwr.clientapp import ClientApp


class Client(NumPyClient):
    def __init__(self, partition):
        self.partition = partition

    def fit(self, parameters, config):
        updated = [{SHRINK} * a + (self.partition + 1) for a in parameters]
        return updated, self.partition + 1, {{"round": config["server-round"], "note": "kept out"}}

    def evaluate(self, parameters, config):
        return sum(float(a.sum()) for a in parameters), 1, {{"partition": self.partition}}


def client_fn(context):
    return Client(int(context.node_config["partition-id"])).to_client()


app = ClientApp(client_fn=client_fn)
"""
FLOWER_SERVER = """
import numpy as np
from flwr.app import Array, ArrayRecord
from flwr.serverapp import ServerApp
from flwr.serverapp.strategy import FedAvg

app = ServerApp()


@app.main()
def main(grid, context):
    initial = ArrayRecord({"w": Array(np.zeros(3)), "b": Array(np.ones(2, dtype=np.float32))})
    FedAvg(min_available_nodes=3).start(
        grid=grid, initial_arrays=initial, num_rounds=int(context.run_config["num-server-rounds"])
    )
"""
COROLLA_CLIENT = f"""
from corolla.client import ClientApp
from corolla.core import ArrayRecord, MetricRecord, RecordDict

app = ClientApp()


@app.train()
def train(message, context):
    partition = int(context.node_config["partition-id"])
    arrays = ArrayRecord(
        {{n: {SHRINK} * a + (partition + 1) for n, a in message.content["arrays"].items()}}
    )
    metrics = MetricRecord({{"num-examples": partition + 1}})
    return RecordDict({{"arrays": arrays, "metrics": metrics}})


@app.evaluate()
def evaluate(message, context):
    loss = sum(float(a.sum()) for a in message.content["arrays"].values())
    return RecordDict({{"metrics": MetricRecord({{"loss": loss, "num-examples": 1}})}})
"""

pytestmark = pytest.mark.e2e


def _expected(partitions: Sequence[int], rounds: int) -> dict[str, np.ndarray]:
    """FedAvg's model after ``rounds`` rounds of the nodes ``partitions``: each round
    ``w <- SHRINK * w + c``, with ``c`` the mean of the ``p + 1`` weighed by ``p + 1``, so
    ``w_r = SHRINK**r * w_0 + c * (1 - SHRINK**r) / (1 - SHRINK)``."""
    c = sum((p + 1) ** 2 for p in partitions) / sum(p + 1 for p in partitions)
    kept = SHRINK**rounds
    return {name: kept * w + c * (1 - kept) / (1 - SHRINK) for name, w in INITIAL.items()}


def _assert_model(arrays: object, partitions: Sequence[int], rounds: int = ROUNDS) -> None:
    got = {name: np.asarray(arrays[name]) for name in INITIAL}  # type: ignore[index]
    for name, want in _expected(partitions, rounds).items():
        assert got[name].dtype == INITIAL[name].dtype, name
        rtol = 8 * float(np.finfo(want.dtype).eps)
        np.testing.assert_allclose(got[name], want, rtol=rtol, atol=0, err_msg=name)


def _corolla_project(root: Path, package: str, server: str, client: str, nodes: int) -> Path:
    """A Corolla app (``[tool.corolla.app]``) of the two modules' sources."""
    return _project(
        root,
        package,
        server,
        client,
        f"""
        [tool.corolla.app]
        serverapp = "{package}.server_app:app"
        clientapp = "{package}.client_app:app"

        [tool.corolla.app.config]
        num-server-rounds = {ROUNDS}

        [tool.corolla.app.simulation]
        num-nodes = {nodes}
        """,
    )


def _flower_project(root: Path, package: str, server: str, client: str, nodes: int) -> Path:
    """A Flower app (``[tool.flwr.app]``) of the two modules' sources."""
    return _project(
        root,
        package,
        server,
        client,
        f"""
        [tool.flwr.app]
        publisher = "corolla-tests"

        [tool.flwr.app.components]
        serverapp = "{package}.server_app:app"
        clientapp = "{package}.client_app:app"

        [tool.flwr.app.config]
        num-server-rounds = {ROUNDS}

        [tool.flwr.federations]
        default = "local"

        [tool.flwr.federations.local]
        options.num-supernodes = {nodes}
        """,
    )


def _project(root: Path, package: str, server: str, client: str, table: str) -> Path:
    # Each project has a package name of its own: a simulation imports it in this process.
    (root / package).mkdir(parents=True)
    (root / package / "__init__.py").write_text("")
    (root / package / "server_app.py").write_text(server)
    (root / package / "client_app.py").write_text(client)
    header = f'[project]\nname = "{package.replace("_", "-")}"\nversion = "1.0.0"\n'
    (root / "pyproject.toml").write_text(header + textwrap.dedent(table))
    return root


def _simulate(app: AppConfig, nodes: int, backend: str) -> SimulationResult:
    return run_simulation(
        app.server_ref, app.client_ref, nodes, backend=backend, run_config=app.config
    )


@pytest.mark.parametrize(
    ("client", "backend"),
    [("message_api", "inline"), ("message_api", "process"), ("numpyclient", "inline")],
)
def test_a_corolla_strategy_drives_flower_client_apps(
    client: str, backend: str, tmp_path: Path
) -> None:
    # Arrange: a Corolla app whose clientapp is a Flower ClientApp
    source = {"message_api": FLOWER_CLIENT, "numpyclient": FLOWER_NUMPY_CLIENT}[client]
    root = _corolla_project(tmp_path, f"cross_{client}_{backend}", COROLLA_SERVER, source, 3)
    app = AppConfig.load(root)

    # Act
    result = _simulate(app, 3, backend)

    # Assert: FedAvg's model, and each round's evaluation of it by every node
    _assert_model(result.arrays, partitions=[0, 1, 2])
    assert result.history is not None
    for number in range(1, ROUNDS + 1):
        summary = result.history.round(number)
        assert (summary.train_replies, summary.evaluate_replies) == (3, 3), summary
        model = _expected([0, 1, 2], number)
        want = sum(float(w.sum()) for w in model.values())
        assert summary.evaluate["loss"] == pytest.approx(want, rel=1e-6)
    if client == "numpyclient":
        # The client's numeric metrics come back, weighed by its number of examples.
        assert result.history.round(2).train == {"round": 2.0, "num-examples": 6}
        assert result.history.round(2).evaluate["partition"] == pytest.approx(1.0)


def test_a_flower_strategy_drives_corolla_client_apps_through_the_command_line(
    tmp_path: Path,
) -> None:
    # Arrange: a Flower app whose clientapp is a Corolla ClientApp
    root = _flower_project(tmp_path / "app", "cross_flower", FLOWER_SERVER, COROLLA_CLIENT, 3)

    # Act
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "corolla",
            "run",
            str(root),
            "--backend",
            "inline",
            "--output",
            "out",
        ],
        cwd=tmp_path,
        env=dict(os.environ, COROLLA_HOME=str(tmp_path / "home")),
        capture_output=True,
        text=True,
        timeout=300,
    )

    # Assert
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    with np.load(tmp_path / "out" / "final.npz") as final:
        _assert_model(dict(final), partitions=[0, 1, 2])
    history = json.loads((tmp_path / "out" / "history.json").read_text())
    assert [r["train_replies"] for r in history["rounds"]] == [3] * ROUNDS
    assert [r["evaluate_replies"] for r in history["rounds"]] == [3] * ROUNDS


def test_a_corolla_app_whose_serverapp_is_flowers_runs_it(tmp_path: Path) -> None:
    # Arrange: a Corolla app of a Flower ServerApp and a Corolla ClientApp
    root = _corolla_project(tmp_path, "cross_flower_server", FLOWER_SERVER, COROLLA_CLIENT, 3)

    # Act
    result = _simulate(AppConfig.load(root), 3, "inline")

    # Assert
    _assert_model(result.arrays, partitions=[0, 1, 2])


def test_a_corolla_strategy_drives_flower_client_apps_on_a_link_with_nodes(
    processes: Processes, tmp_path: Path
) -> None:
    # Arrange: a link and two nodes; a Corolla app whose clientapp is a Flower ClientApp
    root = _corolla_project(tmp_path / "app", "cross_deployed", COROLLA_SERVER, FLOWER_CLIENT, 2)
    _, control = start_deployment(processes, tmp_path, 2)

    # Act
    run_on_link(root, control, tmp_path)

    # Assert
    with np.load(tmp_path / "out" / "final.npz") as final:
        _assert_model(dict(final), partitions=[0, 1])


def _to_every_node(
    grid: object, message_type: str, content: flwr_app.RecordDict
) -> list[flwr_app.Message]:
    """Send ``content`` to every node of a Flower grid; the replies, by partition."""
    nodes = sorted(grid.get_node_ids())  # type: ignore[attr-defined]
    messages = [flwr_app.Message(content, n, message_type) for n in nodes]
    replies = grid.send_and_receive(messages)  # type: ignore[attr-defined]
    assert sorted(r.metadata.src_node_id for r in replies) == nodes
    return replies


def _flower_run(main: object, run_config: dict[str, int] | None = None) -> SimulationResult:
    """A Flower ServerApp of ``main`` against three inline nodes running ``cross_use_apps``."""
    server = FlowerServerApp()
    server.main()(main)
    client = client_app_adapter(cross_use_apps.app)
    return run_simulation(
        server_app_adapter(server), client, 3, backend="inline", run_config=run_config
    )


def test_custom_message_types_and_queries_reach_a_flower_client_app_intact() -> None:
    # Arrange: contents of every kind of record and value Flower holds
    arrays = flwr_app.ArrayRecord(
        {
            "w": flwr_app.Array(np.arange(6.0).reshape(2, 3)),
            "i": flwr_app.Array(np.array([-1, 7], dtype=np.int32)),
        }
    )
    payload = flwr_app.ConfigRecord(
        {"text": "héllo", "blob": b"\x00\xff", "flags": [True, False], "ratio": 0.25}
    )
    metrics = flwr_app.MetricRecord({"xs": [1.0, 2.5], "n": 3})
    factor = flwr_app.ConfigRecord({"factor": 3.0})
    replies: dict[str, list[flwr_app.Message]] = {}

    def main(grid: object, context: flwr_app.Context) -> None:
        sent = flwr_app.RecordDict({"arrays": arrays, "payload": payload, "metrics": metrics})
        replies["query"] = _to_every_node(grid, "query", sent)
        only_arrays = flwr_app.RecordDict({"arrays": arrays})
        replies["query.stats"] = _to_every_node(grid, "query.stats", only_arrays)
        to_scale = flwr_app.RecordDict({"arrays": arrays, "config": factor})
        replies["train.scale"] = _to_every_node(grid, "train.scale", to_scale)

    # Act
    _flower_run(main)

    # Assert: each reply has its request's type and the content the ClientApp made
    for message_type, answers in replies.items():
        assert [r.metadata.message_type for r in answers] == [message_type] * 3
        assert not any(r.has_error() for r in answers)
    echoed = replies["query"]
    assert sorted(r.content["node"]["partition-id"] for r in echoed) == [0, 1, 2]
    for reply in echoed:
        assert reply.content["payload"] == payload and reply.content["metrics"] == metrics
        for name in ("w", "i"):
            back = reply.content["arrays"][name].numpy()
            assert back.dtype == arrays[name].numpy().dtype
            np.testing.assert_array_equal(back, arrays[name].numpy())
    for reply in replies["query.stats"]:
        assert reply.content["stats"] == flwr_app.MetricRecord({"sum": 21.0, "size": 8})
    for reply in replies["train.scale"]:
        np.testing.assert_array_equal(
            reply.content["arrays"]["w"].numpy(), 3.0 * np.arange(6.0).reshape(2, 3)
        )


def test_a_message_type_the_flower_client_app_does_not_handle_comes_back_as_an_error() -> None:
    # Arrange
    replies: dict[str, list[flwr_app.Message]] = {}

    def main(grid: object, context: flwr_app.Context) -> None:
        for message_type in ("query.unknown", "evaluate", "query.calls"):
            replies[message_type] = _to_every_node(grid, message_type, flwr_app.RecordDict())

    # Act
    _flower_run(main)

    # Assert: an error reply each, with Flower's code and the ClientApp's reason
    for message_type, name in (("query.unknown", "query"), ("evaluate", "evaluate")):
        action = message_type.partition(".")[2] or "default"
        for reply in replies[message_type]:
            assert reply.has_error()
            assert reply.error.code == FlowerErrorCode.CLIENT_APP_RAISED_EXCEPTION
            assert f"No {name} function registered with name '{action}'" in reply.error.reason
    # ... and the nodes go on answering what they handle
    assert not any(reply.has_error() for reply in replies["query.calls"])


def test_a_flower_client_apps_state_is_kept_per_node_across_rounds() -> None:
    # Arrange
    calls: list[flwr_app.Message] = []

    def main(grid: object, context: flwr_app.Context) -> None:
        initial = flwr_app.ArrayRecord({n: flwr_app.Array(a) for n, a in INITIAL.items()})
        FlowerFedAvg(fraction_evaluate=0.0).start(
            grid=grid, initial_arrays=initial, num_rounds=ROUNDS
        )
        calls.extend(_to_every_node(grid, "query.calls", flwr_app.RecordDict()))

    # Act
    result = _flower_run(main)

    # Assert: every node counted its own rounds, and the model is FedAvg's
    counts = {int(r.content["calls"]["partition-id"]): r.content["calls"]["train"] for r in calls}
    assert counts == {0: ROUNDS, 1: ROUNDS, 2: ROUNDS}
    _assert_model(result.arrays, partitions=[0, 1, 2])


class _SeesErrors(FlowerFedAvg):
    """Flower's FedAvg, keeping the error replies it is given."""

    def __init__(self, **options: object) -> None:
        super().__init__(**options)  # type: ignore[arg-type]
        self.errors: list[flwr_app.Message] = []

    def aggregate_train(self, server_round, replies):  # type: ignore[no-untyped-def]
        replies = list(replies)
        self.errors.extend(r for r in replies if r.has_error())
        return super().aggregate_train(server_round, replies)


def test_a_flower_client_app_that_raises_gives_an_error_reply_and_the_run_goes_on() -> None:
    # Arrange: partition 0 raises on every train message
    strategy = _SeesErrors(fraction_evaluate=0.0, min_train_nodes=3)

    def main(grid: object, context: flwr_app.Context) -> None:
        initial = flwr_app.ArrayRecord({n: flwr_app.Array(a) for n, a in INITIAL.items()})
        strategy.start(grid=grid, initial_arrays=initial, num_rounds=ROUNDS)

    # Act
    result = _flower_run(main, run_config={"failing-partition": 0})

    # Assert: Flower's strategy was given the error each round, counted it as a failure
    # and averaged the other replies
    assert [e.error.code for e in strategy.errors] == [
        FlowerErrorCode.CLIENT_APP_RAISED_EXCEPTION
    ] * ROUNDS
    for error in strategy.errors:
        assert "RuntimeError: partition 0 has no data" in error.error.reason
    assert result.history is not None
    assert [r.train_failures for r in result.history.rounds] == [1] * ROUNDS
    assert [r.train_replies for r in result.history.rounds] == [2] * ROUNDS
    _assert_model(result.arrays, partitions=[1, 2])
