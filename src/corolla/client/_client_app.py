"""ClientApp: what a data owner does with a message from the ServerApp."""

from __future__ import annotations

import traceback
from collections.abc import Callable, Sequence
from typing import overload

from ..core import (
    Context,
    CorollaError,
    Error,
    ErrorCode,
    Message,
    MessageError,
    RecordDict,
    validate_message_type,
)

__all__ = ["CallNext", "ClientApp", "Handler", "Mod", "NoHandlerError", "run_client_app"]

Handler = Callable[[Message, Context], Message]
CallNext = Callable[[Message, Context], Message]
#: Middleware: ``mod(message, context, call_next) -> reply``.
Mod = Callable[[Message, Context, CallNext], Message]


class NoHandlerError(MessageError):
    """The ClientApp registered no handler for a message's type."""

    code = ErrorCode.NO_HANDLER


class ClientApp:
    """Handlers for ``train``, ``evaluate`` and ``query`` messages, wrapped in mods.

    Register handlers with decorators::

        app = ClientApp()

        @app.train()
        def train(message: Message, context: Context) -> Message:
            ...
            return Message(RecordDict({...}), reply_to=message)

    ``@app.train("fedprox")`` handles messages of type ``train.fedprox``. Mods run outermost
    first around every handler.
    """

    def __init__(self, mods: Sequence[Mod] = ()) -> None:
        self._handlers: dict[str, Handler] = {}
        self._mods = tuple(mods)

    def _register(self, base: str, action: str | Handler | None) -> Callable[[Handler], Handler]:
        def decorate(handler: Handler) -> Handler:
            key = base if not name else f"{base}.{name}"
            validate_message_type(key)
            if key in self._handlers:
                raise MessageError(f"ClientApp already has a handler for {key!r}")
            self._handlers[key] = handler
            return handler

        name = action if isinstance(action, str) else ""
        return decorate

    @overload
    def train(self, action: Handler) -> Handler: ...
    @overload
    def train(self, action: str | None = None) -> Callable[[Handler], Handler]: ...
    def train(self, action: str | Handler | None = None) -> Handler | Callable[[Handler], Handler]:
        """Register the handler for ``train`` (or ``train.<action>``) messages."""
        return self._decorate("train", action)

    @overload
    def evaluate(self, action: Handler) -> Handler: ...
    @overload
    def evaluate(self, action: str | None = None) -> Callable[[Handler], Handler]: ...
    def evaluate(
        self, action: str | Handler | None = None
    ) -> Handler | Callable[[Handler], Handler]:
        """Register the handler for ``evaluate`` (or ``evaluate.<action>``) messages."""
        return self._decorate("evaluate", action)

    @overload
    def query(self, action: Handler) -> Handler: ...
    @overload
    def query(self, action: str | None = None) -> Callable[[Handler], Handler]: ...
    def query(self, action: str | Handler | None = None) -> Handler | Callable[[Handler], Handler]:
        """Register the handler for ``query`` (or ``query.<action>``) messages."""
        return self._decorate("query", action)

    def _decorate(
        self, base: str, action: str | Handler | None
    ) -> Handler | Callable[[Handler], Handler]:
        decorator = self._register(base, action)
        if callable(action):
            return decorator(action)
        return decorator

    @property
    def message_types(self) -> list[str]:
        """The message types this app handles."""
        return list(self._handlers)

    def __call__(self, message: Message, context: Context) -> Message:
        """Run the matching handler, wrapped in the mods, and return its reply.

        Raises
        ------
        NoHandlerError
            If no handler is registered for the message's type.
        MessageError
            If the handler returns something other than a Message or RecordDict.
        Exception
            Whatever the handler or a mod raises.
        """

        def dispatch(msg: Message, ctx: Context) -> Message:
            message_type = msg.metadata.message_type
            handler = self._handlers.get(message_type)
            if handler is None:
                raise NoHandlerError(
                    f"ClientApp has no handler for message type {message_type!r} "
                    f"(it handles {self.message_types or 'nothing'})"
                )
            return _as_reply(handler(msg, ctx), msg)

        call: CallNext = dispatch
        for mod in reversed(self._mods):
            call = _bind(mod, call)
        return _as_reply(call(message, context), message)


def _bind(mod: Mod, call_next: CallNext) -> CallNext:
    def wrapped(message: Message, context: Context) -> Message:
        return mod(message, context, call_next)

    return wrapped


def _as_reply(reply: object, request: Message) -> Message:
    if isinstance(reply, RecordDict):
        return Message(reply, reply_to=request)
    if not isinstance(reply, Message):
        raise MessageError(
            f"a ClientApp handler must return a Message or RecordDict, got {type(reply).__name__}"
        )
    if not _answers(reply, request):
        # Handlers may build a fresh message; address it as a reply to the request.
        if reply.has_content():
            return Message(reply.content, reply_to=request)
        return Message(error=reply.error, reply_to=request)
    return reply


def _answers(reply: Message, request: Message) -> bool:
    """True if ``reply`` is addressed as a reply to ``request``.

    The reply-to id alone does not tell: a request not yet stamped by a runtime has an
    empty message id, and so has a fresh message the handler built.
    """
    got, want = reply.metadata, request.metadata
    return (
        got.reply_to_message_id == want.message_id
        and got.src_node_id == want.dst_node_id
        and got.dst_node_id == want.src_node_id
        and got.run_id == want.run_id
        and got.group_id == want.group_id
        and got.message_type == want.message_type
    )


def run_client_app(
    app: Callable[[Message, Context], Message], message: Message, context: Context
) -> Message:
    """Run ``app`` on ``message`` and return its reply; never raises an :class:`Exception`.

    An exception in the app becomes an error reply whose reason carries the traceback. Its
    code is the exception's own for a :class:`~corolla.core.CorollaError` (e.g.
    ``NO_HANDLER``), and ``CLIENT_APP_RAISED`` for any other exception.
    """
    try:
        return _as_reply(app(message, context), message)
    except Exception as exc:
        code = exc.code if isinstance(exc, CorollaError) else ErrorCode.CLIENT_APP_RAISED
        if code == ErrorCode.UNKNOWN:
            code = ErrorCode.CLIENT_APP_RAISED
        reason = (
            f"node {context.node_id}: ClientApp raised {type(exc).__name__}: {_describe(exc)}\n"
            + "".join(traceback.format_exception(exc))
        )
        return Message(error=Error(code=int(code), reason=reason), reply_to=message)


def _describe(exc: BaseException) -> str:
    # An exception's __str__ is user code too; it must not make run_client_app raise.
    try:
        return str(exc)
    except Exception:
        return "<str() of the exception failed>"
