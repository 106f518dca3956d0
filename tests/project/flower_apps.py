"""A small Flower project as ``flwr new`` writes it, and an adapter the tests load by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: flwr up to 1.40 kept the federations in the project; 1.41 on drop this table.
FEDERATIONS = """
[tool.flwr.federations]
default = "local-simulation"

[tool.flwr.federations.local-simulation]
options.num-supernodes = 10

[tool.flwr.federations.remote-federation]
address = "127.0.0.1:9093"
insecure = true
"""

PYPROJECT = """
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "myapp"
version = "1.0.0"
description = "A Flower app"
license = "Apache-2.0"
dependencies = ["flwr[simulation]>=1.41.0"]

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "alice"

[tool.flwr.app.components]
serverapp = "myapp.server_app:app"
clientapp = "myapp.client_app:app"

[tool.flwr.app.config]
num-server-rounds = 3
fraction-train = 0.5
local-epochs = 1
lr = 0.01
optimizer.name = "sgd"
"""


def write_flower_project(parent: Path, pyproject: str = PYPROJECT + FEDERATIONS) -> Path:
    """A ``myapp`` directory under ``parent`` with the package and its pyproject.toml."""
    root = parent / "myapp"
    package = root / "myapp"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "server_app.py").write_text("app = 'flower server app'\n")
    (package / "client_app.py").write_text("app = 'flower client app'\n")
    (root / "pyproject.toml").write_text(pyproject)
    return root


def tag_adapter(component: Any) -> tuple[str, Any]:
    """An adapter: what the loaded component was, tagged."""
    return ("adapted", component)


def failing_adapter(component: Any) -> Any:
    raise TypeError(f"cannot adapt {component!r}")


not_callable = 42
