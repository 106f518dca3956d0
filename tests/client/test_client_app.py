from __future__ import annotations

import pickle

import pytest

import corolla.client
from corolla.client import CallNext, ClientApp, NoHandlerError, run_client_app
from corolla.core import (
    ConfigError,
    ConfigRecord,
    Context,
    Error,
    ErrorCode,
    Message,
    MessageError,
    MetricRecord,
    RecordDict,
)


def request(message_type: str = "train", *, message_id: str = "m-1", dst: int = 7) -> Message:
    """A message as a runtime delivers it: stamped with a run id and a message id."""
    return Message(
        RecordDict({"config": ConfigRecord({"lr": 0.1})}),
        dst_node_id=dst,
        message_type=message_type,
        group_id="3",
    ).with_metadata(run_id=5, message_id=message_id)


def context(node_id: int = 7) -> Context:
    return Context(run_id=5, node_id=node_id, node_config={"partition-id": 0}, run_config={})


def metrics(**values: int | float) -> RecordDict:
    return RecordDict({"metrics": MetricRecord(values)})


def test_public_names_are_exactly_the_intended_ones() -> None:
    assert sorted(corolla.client.__all__) == [
        "CallNext",
        "ClientApp",
        "Handler",
        "Mod",
        "NoHandlerError",
        "run_client_app",
    ]
    assert all(hasattr(corolla.client, name) for name in corolla.client.__all__)


# Registration


def test_decorators_with_and_without_parentheses_register_the_base_types() -> None:
    app = ClientApp()

    @app.train()
    def train(message: Message, ctx: Context) -> Message:
        return Message(metrics(loss=1.0), reply_to=message)

    @app.evaluate
    def evaluate(message: Message, ctx: Context) -> Message:
        return Message(metrics(acc=0.5), reply_to=message)

    @app.query()
    def query(message: Message, ctx: Context) -> Message:
        return Message(metrics(n=1), reply_to=message)

    assert app.message_types == ["train", "evaluate", "query"]
    # The decorators hand the function back, so it can still be called directly.
    assert callable(train) and train.__name__ == "train"
    assert evaluate.__name__ == "evaluate"


def test_a_named_action_registers_a_custom_type() -> None:
    app = ClientApp()

    @app.train("custom")
    def custom(message: Message, ctx: Context) -> Message:
        return Message(metrics(custom=1), reply_to=message)

    assert app.message_types == ["train.custom"]
    reply = app(request("train.custom"), context())
    assert reply.content["metrics"]["custom"] == 1


def test_registering_a_type_twice_is_an_error() -> None:
    app = ClientApp()
    app.train()(lambda m, c: m)
    app.evaluate("x")(lambda m, c: m)

    with pytest.raises(MessageError, match="already has a handler for 'train'"):
        app.train(lambda m, c: m)
    with pytest.raises(MessageError, match=r"evaluate\.x"):
        app.evaluate("x")(lambda m, c: m)
    assert app.message_types == ["train", "evaluate.x"]


def test_an_invalid_action_name_is_rejected() -> None:
    app = ClientApp()

    with pytest.raises(MessageError, match="invalid message type"):
        app.train("not an identifier")(lambda m, c: m)
    assert app.message_types == []


# Dispatch


def test_messages_are_dispatched_by_type() -> None:
    app = ClientApp()
    seen: list[str] = []

    @app.train()
    def train(message: Message, ctx: Context) -> Message:
        seen.append("train")
        return Message(metrics(which=1), reply_to=message)

    @app.train("other")
    def other(message: Message, ctx: Context) -> Message:
        seen.append("train.other")
        return Message(metrics(which=2), reply_to=message)

    @app.evaluate()
    def evaluate(message: Message, ctx: Context) -> Message:
        seen.append("evaluate")
        return Message(metrics(which=3), reply_to=message)

    replies = [app(request(t), context()) for t in ("evaluate", "train.other", "train")]

    assert seen == ["evaluate", "train.other", "train"]
    assert [r.content["metrics"]["which"] for r in replies] == [3, 2, 1]


def test_the_handler_gets_the_message_and_the_context() -> None:
    app = ClientApp()
    received: list[tuple[Message, Context]] = []

    @app.train()
    def train(message: Message, ctx: Context) -> RecordDict:
        received.append((message, ctx))
        return metrics(n=1)

    message, ctx = request(), context()
    app(message, ctx)

    assert received == [(message, ctx)]


def test_a_message_without_handler_raises_no_handler_error() -> None:
    app = ClientApp()
    app.train()(lambda m, c: m)

    with pytest.raises(NoHandlerError, match=r"'evaluate'.*\['train'\]") as info:
        app(request("evaluate"), context())
    assert info.value.code == ErrorCode.NO_HANDLER
    assert isinstance(info.value, MessageError)


def test_a_custom_type_is_not_served_by_the_base_handler() -> None:
    app = ClientApp()
    app.train()(lambda m, c: m)

    with pytest.raises(NoHandlerError):
        app(request("train.custom"), context())


# Replies


def test_a_returned_record_dict_is_wrapped_as_a_reply() -> None:
    app = ClientApp()
    app.train()(lambda m, c: metrics(loss=0.25))
    message = request()

    reply = app(message, context())

    assert isinstance(reply, Message)
    assert reply.content == metrics(loss=0.25)
    assert reply.metadata.reply_to_message_id == "m-1"


def test_reply_metadata_answers_the_request() -> None:
    app = ClientApp()
    app.train()(lambda m, c: Message(metrics(loss=1.0), reply_to=m))
    message = request(dst=7)

    reply = app(message, context())

    meta = reply.metadata
    assert meta.reply_to_message_id == message.metadata.message_id
    assert (meta.src_node_id, meta.dst_node_id) == (7, message.metadata.src_node_id)
    assert meta.run_id == 5
    assert meta.group_id == "3"
    assert meta.message_type == "train"


def test_a_fresh_message_from_a_handler_is_readdressed_as_a_reply() -> None:
    app = ClientApp()
    app.train()(lambda m, c: Message(metrics(n=1), dst_node_id=99, message_type="evaluate"))

    # Also for a request the runtime has not stamped (empty message id), where the
    # fresh message's empty reply-to id would otherwise look like an answer.
    for message in (request(), request(message_id="")):
        reply = app(message, context())

        assert reply.metadata.reply_to_message_id == message.metadata.message_id
        assert reply.metadata.src_node_id == 7
        assert reply.metadata.dst_node_id == 0
        assert reply.metadata.message_type == "train"
        assert reply.content == metrics(n=1)


def test_an_error_message_from_a_handler_is_kept_as_an_error_reply() -> None:
    app = ClientApp()
    error = Error(code=int(ErrorCode.CLIENT_APP_RAISED), reason="no data")
    app.train()(lambda m, c: Message(error=error, reply_to=m))

    reply = app(request(), context())

    assert reply.error == error
    assert reply.metadata.reply_to_message_id == "m-1"


def test_a_handler_returning_something_else_is_an_error() -> None:
    app = ClientApp()
    app.train()(lambda m, c: {"loss": 1.0})

    with pytest.raises(MessageError, match="must return a Message or RecordDict, got dict"):
        app(request(), context())


# Mods


def test_mods_run_outermost_first_around_the_handler() -> None:
    calls: list[str] = []

    def mod(name: str):  # type: ignore[no-untyped-def]
        def wrapped(message: Message, ctx: Context, call_next: CallNext) -> Message:
            calls.append(f"{name} in")
            reply = call_next(message, ctx)
            calls.append(f"{name} out")
            return reply

        return wrapped

    app = ClientApp(mods=[mod("outer"), mod("inner")])

    @app.train()
    def train(message: Message, ctx: Context) -> RecordDict:
        calls.append("handler")
        return metrics(n=1)

    app(request(), context())

    assert calls == ["outer in", "inner in", "handler", "inner out", "outer out"]


def test_mods_may_change_the_message_and_the_reply() -> None:
    def scale_lr(message: Message, ctx: Context, call_next: CallNext) -> Message:
        config = message.content["config"] | {"lr": 0.5}
        changed = Message(message.content | {"config": config}, metadata=message.metadata)
        reply = call_next(changed, ctx)
        return Message(reply.content | {"extra": MetricRecord({"seen": 1})}, reply_to=message)

    app = ClientApp(mods=[scale_lr])

    @app.train()
    def train(message: Message, ctx: Context) -> RecordDict:
        return metrics(lr=message.content["config"]["lr"])

    reply = app(request(), context())

    assert reply.content["metrics"]["lr"] == 0.5
    assert reply.content["extra"]["seen"] == 1


def test_a_mod_may_short_circuit_the_handler() -> None:
    handled: list[int] = []

    def refuse(message: Message, ctx: Context, call_next: CallNext) -> Message:
        return Message(error=Error(int(ErrorCode.CLIENT_APP_RAISED), "refused"), reply_to=message)

    def record(message: Message, ctx: Context, call_next: CallNext) -> Message:
        handled.append(1)
        return call_next(message, ctx)

    app = ClientApp(mods=[refuse, record])
    app.train()(lambda m, c: handled.append(2) or metrics(n=1))

    reply = app(request(), context())

    assert reply.error.reason == "refused"
    assert reply.metadata.reply_to_message_id == "m-1"
    assert handled == []


def test_a_mod_returning_a_record_dict_is_wrapped_too() -> None:
    app = ClientApp(mods=[lambda m, c, call_next: metrics(short=1)])
    app.train()(lambda m, c: metrics(n=1))

    reply = app(request(), context())

    assert reply.content == metrics(short=1)
    assert reply.metadata.reply_to_message_id == "m-1"


def test_mods_also_wrap_messages_without_a_handler() -> None:
    def answer_everything(message: Message, ctx: Context, call_next: CallNext) -> Message:
        try:
            return call_next(message, ctx)
        except NoHandlerError:
            return Message(metrics(fallback=1), reply_to=message)

    app = ClientApp(mods=[answer_everything])

    reply = app(request("query"), context())

    assert reply.content == metrics(fallback=1)


# run_client_app


class Boom(Exception):
    pass


def raising_app(exc: BaseException) -> ClientApp:
    app = ClientApp()

    @app.train()
    def train(message: Message, ctx: Context) -> Message:
        raise exc

    return app


def test_run_client_app_returns_the_reply() -> None:
    app = ClientApp()
    app.train()(lambda m, c: metrics(n=1))

    reply = run_client_app(app, request(), context())

    assert reply.content == metrics(n=1)


def test_an_exception_becomes_an_error_reply_with_the_traceback() -> None:
    message = request()

    reply = run_client_app(raising_app(Boom("out of memory")), message, context(node_id=7))

    assert reply.has_error()
    assert reply.error.code == ErrorCode.CLIENT_APP_RAISED
    reason = reply.error.reason
    assert "node 7" in reason
    assert "Boom: out of memory" in reason
    assert "Traceback (most recent call last)" in reason
    assert "raise exc" in reason  # the line of the handler that raised
    assert reply.metadata.reply_to_message_id == "m-1"
    assert (reply.metadata.src_node_id, reply.metadata.dst_node_id) == (7, 0)


def test_a_missing_handler_becomes_a_no_handler_reply() -> None:
    reply = run_client_app(ClientApp(), request("evaluate"), context())

    assert reply.error.code == ErrorCode.NO_HANDLER
    assert "NoHandlerError" in reply.error.reason


def test_a_corolla_error_keeps_its_code() -> None:
    reply = run_client_app(raising_app(ConfigError("bad lr")), request(), context())

    assert reply.error.code == ErrorCode.CONFIG


def test_a_foreign_code_attribute_is_not_taken_for_an_error_code() -> None:
    class HTTPError(Exception):
        code = 404

    reply = run_client_app(raising_app(HTTPError("not found")), request(), context())

    assert reply.error.code == ErrorCode.CLIENT_APP_RAISED


def test_an_exception_whose_str_fails_still_becomes_an_error_reply() -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no str")

    reply = run_client_app(raising_app(Unprintable()), request(), context())

    assert reply.error.code == ErrorCode.CLIENT_APP_RAISED
    assert "Unprintable" in reply.error.reason


@pytest.mark.parametrize("returned", [None, {"loss": 1.0}, 3], ids=["none", "dict", "int"])
def test_a_plain_callable_returning_a_non_message_gives_an_error_reply(
    returned: object,
) -> None:
    reply = run_client_app(lambda m, c: returned, request(), context())  # type: ignore[arg-type,return-value]

    assert isinstance(reply, Message)
    assert reply.error.code == ErrorCode.MESSAGE


def test_a_plain_callable_returning_a_record_dict_gets_a_reply() -> None:
    reply = run_client_app(lambda m, c: metrics(n=1), request(), context())  # type: ignore[arg-type,return-value]

    assert reply.content == metrics(n=1)
    assert reply.metadata.reply_to_message_id == "m-1"


def test_a_raising_mod_becomes_an_error_reply() -> None:
    def broken(message: Message, ctx: Context, call_next: CallNext) -> Message:
        raise Boom("mod failed")

    app = ClientApp(mods=[broken])
    app.train()(lambda m, c: metrics(n=1))

    reply = run_client_app(app, request(), context())

    assert reply.error.code == ErrorCode.CLIENT_APP_RAISED
    assert "mod failed" in reply.error.reason


def test_run_client_app_lets_interrupts_through() -> None:
    # Only Exceptions become replies: Ctrl-C and SystemExit must still stop a node.
    with pytest.raises(KeyboardInterrupt):
        run_client_app(raising_app(KeyboardInterrupt()), request(), context())


def test_an_error_reply_survives_pickling() -> None:
    # Error replies cross process boundaries in simulation.
    reply = run_client_app(raising_app(Boom("x")), request(), context())

    assert pickle.loads(pickle.dumps(reply)) == reply
