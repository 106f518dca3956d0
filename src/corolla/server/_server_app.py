"""ServerApp: what the coordinator does with the nodes of a run."""

from __future__ import annotations

from collections.abc import Callable

from ..core import Context
from ..core._errors import ConfigError
from ._grid import Grid

__all__ = ["MainFunction", "ServerApp"]

MainFunction = Callable[[Grid, Context], None]


class ServerApp:
    """The server side of an app: a ``main(grid, context)`` function.

    Give it at construction (``ServerApp(main)``) or with the decorator::

        app = ServerApp()

        @app.main()
        def main(grid: Grid, context: Context) -> None:
            ...
    """

    def __init__(self, main: MainFunction | None = None) -> None:
        self._main = main

    def main(self) -> Callable[[MainFunction], MainFunction]:
        """Decorator registering the app's main function.

        Raises
        ------
        ConfigError
            If a main function is already registered.
        """

        def decorate(fn: MainFunction) -> MainFunction:
            if self._main is not None:
                raise ConfigError("ServerApp already has a main function")
            self._main = fn
            return fn

        return decorate

    def __call__(self, grid: Grid, context: Context) -> None:
        """Run the app's main function.

        Raises
        ------
        ConfigError
            If no main function was registered.
        """
        if self._main is None:
            raise ConfigError("ServerApp has no main function: decorate one with @app.main()")
        self._main(grid, context)
