"""Run a Flower project under Flower's own simulation (``flwr.simulation``, on Ray), as the
reference that Corolla's runs of the same project are compared with.

Flower's public ``run_simulation`` takes no run config; ``flwr run`` reads it from the
project's pyproject.toml and hands it to the simulation through a ``Run``. This does the
same with the simulation's function that takes one.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import tomllib


def run_config_of(project: Path) -> dict[str, Any]:
    """The ``[tool.flwr.app.config]`` defaults, flattened as Flower flattens them."""
    table = tomllib.loads((project / "pyproject.toml").read_text())["tool"]["flwr"]["app"]
    out: dict[str, Any] = {}

    def flatten(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                flatten(f"{prefix}.{key}" if prefix else key, inner)
        else:
            out[prefix] = value

    flatten("", table.get("config", {}))
    return out


#: One virtual client per core: each Ray worker imports the app's libraries (torch,
#: scikit-learn) when it starts, so fewer workers start sooner.
RAY_INIT_ARGS: dict[str, Any] = {
    "num_cpus": 2,
    "include_dashboard": False,
    "_node_ip_address": "127.0.0.1",
}
BACKEND_CONFIG: dict[str, Any] = {"client_resources": {"num_cpus": 1}, "init_args": RAY_INIT_ARGS}


def run_all_with_flower(runs: list[tuple[Path, int, Path]]) -> None:
    """Run each ``(project, num_supernodes, workdir)`` as :func:`run_with_flower` does, in
    its working directory, one after the other on one Ray cluster.

    Starting and stopping Ray takes seconds, more than a small project's run: the cluster
    is started here, so Flower's simulation finds it running and uses it, and the stop
    Flower asks for after each run waits for the last one.
    """
    import ray

    # As Flower starts Ray itself: its workers import the apps from the projects' paths.
    paths = [str(project) for project, _, _ in runs]
    pythonpath = os.pathsep.join([*paths, *sys.path, *filter(None, [os.environ.get("PYTHONPATH")])])
    os.environ["PYTHONPATH"] = pythonpath
    ray.init(runtime_env={"env_vars": {"PYTHONPATH": pythonpath}}, **RAY_INIT_ARGS)
    stop = ray.shutdown
    ray.shutdown = lambda *args, **kwargs: None  # type: ignore[assignment]
    try:
        for project, num_supernodes, workdir in runs:
            os.chdir(workdir)
            run_with_flower(project, num_supernodes)
    finally:
        ray.shutdown = stop  # type: ignore[assignment]
        ray.shutdown()


def run_with_flower(project: Path, num_supernodes: int) -> None:
    """Run the project's ServerApp and ClientApp in Flower's simulation, in this process's
    working directory (where the apps write their outputs)."""
    from flwr.app import Context, RecordDict
    from flwr.common.constant import SUPERLINK_NODE_ID
    from flwr.simulation.run_simulation import _run_simulation
    from flwr.supercore.constant import NOOP_FEDERATION_ID
    from flwr.supercore.run import Run
    from flwr.supercore.task_identity import TaskIdentity

    components = tomllib.loads((project / "pyproject.toml").read_text())["tool"]["flwr"]["app"][
        "components"
    ]
    run_config = run_config_of(project)
    # What run_simulation sets up when it makes the run itself.
    run = Run.create_empty(run_id=1)
    run.override_config = run_config
    run.primary_task_id = 1
    run.federation_id = NOOP_FEDERATION_ID
    TaskIdentity.task_id = 1
    TaskIdentity.run_id = 1
    TaskIdentity.node_id = SUPERLINK_NODE_ID
    sys.path.insert(0, str(project))
    try:
        _run_simulation(
            num_supernodes=num_supernodes,
            exit_event=None,  # type: ignore[arg-type]
            client_app_attr=components["clientapp"],
            server_app_attr=components["serverapp"],
            server_app_context=Context(
                run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=run_config
            ),
            app_dir=str(project),
            is_app=True,
            run=run,
            backend_config=BACKEND_CONFIG,
        )
    finally:
        sys.path.remove(str(project))
