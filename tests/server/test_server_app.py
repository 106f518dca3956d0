from __future__ import annotations

import pytest

from corolla.core import ConfigError, Context
from corolla.server import Grid, ServerApp

from .doubles import MemoryGrid


def server_context() -> Context:
    return Context(run_id=1, node_id=0, node_config={}, run_config={"rounds": 2})


def test_main_given_at_construction_is_called_with_grid_and_context() -> None:
    calls: list[tuple[Grid, Context]] = []
    app = ServerApp(lambda grid, ctx: calls.append((grid, ctx)))
    grid, ctx = MemoryGrid(), server_context()

    app(grid, ctx)

    assert calls == [(grid, ctx)]


@pytest.mark.parametrize("parentheses", [True, False])
def test_main_decorator_registers_and_returns_the_function(parentheses: bool) -> None:
    app = ServerApp()
    calls: list[int] = []

    def main(grid: Grid, ctx: Context) -> None:
        calls.append(int(ctx.run_config["rounds"]))

    registered = app.main()(main) if parentheses else app.main(main)
    app(MemoryGrid(), server_context())

    assert registered is main
    assert calls == [2]


def test_a_second_main_is_a_config_error() -> None:
    app = ServerApp(lambda grid, ctx: None)

    with pytest.raises(ConfigError, match="already has a main"):
        app.main()(lambda grid, ctx: None)
    with pytest.raises(ConfigError, match="already has a main"):
        app.main(lambda grid, ctx: None)


def test_calling_without_main_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no main function"):
        ServerApp()(MemoryGrid(), server_context())


def test_exceptions_of_main_propagate() -> None:
    def main(grid: Grid, ctx: Context) -> None:
        raise RuntimeError("server failed")

    with pytest.raises(RuntimeError, match="server failed"):
        ServerApp(main)(MemoryGrid(), server_context())
