"""ServerApp: what the coordinator does with the nodes of a run."""

from __future__ import annotations

from collections.abc import Callable
from typing import overload

from ..core import ConfigError, Context
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

    @overload
    def main(self, fn: MainFunction) -> MainFunction: ...
    @overload
    def main(self, fn: None = None) -> Callable[[MainFunction], MainFunction]: ...
    def main(
        self, fn: MainFunction | None = None
    ) -> MainFunction | Callable[[MainFunction], MainFunction]:
        """Decorator registering the app's main function: ``@app.main()`` or ``@app.main``.

        Raises
        ------
        ConfigError
            If a main function is already registered.
        """

        def decorate(main: MainFunction) -> MainFunction:
            if self._main is not None:
                raise ConfigError("ServerApp already has a main function")
            self._main = main
            return main

        return decorate(fn) if fn is not None else decorate

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
