"""Client side: the ClientApp, its handlers and mods."""

from ._client_app import CallNext, ClientApp, Handler, Mod, NoHandlerError, run_client_app

__all__ = ["CallNext", "ClientApp", "Handler", "Mod", "NoHandlerError", "run_client_app"]
