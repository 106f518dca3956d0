from __future__ import annotations

import pickle
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from corolla.core import (
    AggregationError,
    AppLoadError,
    CodecError,
    ConfigError,
    CorollaError,
    ErrorCode,
    ExecutionError,
    MessageError,
    MissingExtraError,
    NotEnoughNodesError,
    PermissionDeniedError,
    RecordError,
)
from corolla.transport import (
    ERROR_CODE_KEY,
    TransportError,
    abort,
    channel_options,
    error_from_code,
    error_from_rpc,
    fleet_pb2,
    fleet_pb2_grpc,
    iter_rpc,
    run_pb2,
    status_for,
    translate_rpc_errors,
)
from corolla.transport._errors import STATUS_FOR_CODE

from .servers import serve


class FailingFleet(fleet_pb2_grpc.FleetServicer):
    """Heartbeat fails with ``error``; Receive sends one message first."""

    def __init__(self) -> None:
        self.error: CorollaError | None = None

    def Heartbeat(self, request: Any, context: grpc.ServicerContext) -> Any:
        if self.error is not None:
            abort(context, self.error)
        return fleet_pb2.HeartbeatResponse(heartbeat_interval=1.0)

    def Receive(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        yield fleet_pb2.ReceiveResponse()
        assert self.error is not None
        abort(context, self.error)


@pytest.fixture(scope="module")
def fleet() -> Iterator[tuple[FailingFleet, fleet_pb2_grpc.FleetStub]]:
    servicer = FailingFleet()
    register = lambda s: fleet_pb2_grpc.add_FleetServicer_to_server(servicer, s)  # noqa: E731
    with (
        serve(register) as port,
        grpc.insecure_channel(f"127.0.0.1:{port}", options=channel_options()) as channel,
    ):
        yield servicer, fleet_pb2_grpc.FleetStub(channel)


def test_every_error_code_has_a_status() -> None:
    assert set(STATUS_FOR_CODE) == set(ErrorCode)
    assert grpc.StatusCode.OK not in STATUS_FOR_CODE.values()


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (CodecError("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (RecordError("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (AppLoadError("x"), grpc.StatusCode.FAILED_PRECONDITION),
        (NotEnoughNodesError("x"), grpc.StatusCode.FAILED_PRECONDITION),
        (ErrorCode.TIMEOUT, grpc.StatusCode.DEADLINE_EXCEEDED),
        (ErrorCode.NODE_UNAVAILABLE, grpc.StatusCode.UNAVAILABLE),
        (TransportError("x", status="NOT_FOUND"), grpc.StatusCode.NOT_FOUND),
        (TransportError("x", status="BOGUS"), grpc.StatusCode.UNKNOWN),
    ],
)
def test_status_for(error: CorollaError | ErrorCode, status: grpc.StatusCode) -> None:
    assert status_for(error) == status


@pytest.mark.parametrize(
    "error",
    [CodecError("hash mismatch"), ConfigError("unknown run 9"), AppLoadError("no module")],
)
def test_corolla_errors_cross_the_wire_as_themselves(fleet: Any, error: CorollaError) -> None:
    servicer, stub = fleet
    servicer.error = error

    with pytest.raises(type(error), match=str(error)) as caught, translate_rpc_errors():
        stub.Heartbeat(fleet_pb2.HeartbeatRequest())

    assert isinstance(caught.value.__cause__, grpc.RpcError)
    assert caught.value.__cause__.code() == status_for(error)  # type: ignore[attr-defined]
    assert dict(caught.value.__cause__.trailing_metadata())[ERROR_CODE_KEY] == str(  # type: ignore[attr-defined]
        int(error.code)
    )


def test_codes_without_a_rebuildable_class_become_transport_errors(fleet: Any) -> None:
    servicer, stub = fleet
    servicer.error = MissingExtraError("torch", "torch")

    with pytest.raises(TransportError) as caught, translate_rpc_errors():
        stub.Heartbeat(fleet_pb2.HeartbeatRequest())

    assert caught.value.code == ErrorCode.MISSING_EXTRA
    assert caught.value.status == "FAILED_PRECONDITION"
    assert not caught.value.retryable


def test_errors_of_a_stream_are_translated_as_they_surface(fleet: Any) -> None:
    servicer, stub = fleet
    servicer.error = RecordError("bad record")
    received = []

    with pytest.raises(RecordError, match="bad record"):
        for response in iter_rpc(stub.Receive(fleet_pb2.ReceiveRequest())):
            received.append(response)

    assert len(received) == 1


def test_unreachable_peer_is_a_retryable_transport_error() -> None:
    with serve(lambda s: None) as port:
        pass  # the port is free again
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = fleet_pb2_grpc.FleetStub(channel)
        with pytest.raises(TransportError) as caught, translate_rpc_errors():
            stub.Heartbeat(fleet_pb2.HeartbeatRequest(), timeout=5)

    assert caught.value.status == "UNAVAILABLE"
    assert caught.value.retryable
    assert isinstance(caught.value, ConnectionError)


def test_expired_deadline_is_a_timeout(fleet: Any) -> None:
    class Slow(fleet_pb2_grpc.FleetServicer):
        def Heartbeat(self, request: Any, context: grpc.ServicerContext) -> Any:
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "too slow")

    register = lambda s: fleet_pb2_grpc.add_FleetServicer_to_server(Slow(), s)  # noqa: E731
    with (
        serve(register) as port,
        grpc.insecure_channel(f"127.0.0.1:{port}") as channel,
        pytest.raises(TransportError) as caught,
        translate_rpc_errors(),
    ):
        fleet_pb2_grpc.FleetStub(channel).Heartbeat(fleet_pb2.HeartbeatRequest())

    assert caught.value.code == ErrorCode.TIMEOUT
    assert caught.value.retryable


def test_unimplemented_method_is_a_transport_error(fleet: Any) -> None:
    _, stub = fleet

    with pytest.raises(TransportError, match="UNIMPLEMENTED") as caught, translate_rpc_errors():
        stub.GetRun(run_pb2.GetRunRequest(run_id=1))

    assert caught.value.code == ErrorCode.UNKNOWN


def test_an_rpc_error_that_is_no_call() -> None:
    error = error_from_rpc(grpc.RpcError("odd"))

    assert isinstance(error, TransportError)
    assert error.status == "UNKNOWN"


def test_transport_error_pickles() -> None:
    error = TransportError("UNAVAILABLE: gone", status="UNAVAILABLE", code=ErrorCode.TIMEOUT)

    copy = pickle.loads(pickle.dumps(error))

    assert (str(copy), copy.status, copy.code) == (str(error), "UNAVAILABLE", ErrorCode.TIMEOUT)


#: The codes whose error class is rebuilt from the reason alone; the others cross the wire
#: as a TransportError.
REBUILT = {
    ErrorCode.CONFIG: ConfigError,
    ErrorCode.RECORD: RecordError,
    ErrorCode.CODEC: CodecError,
    ErrorCode.MESSAGE: MessageError,
    ErrorCode.APP_LOAD: AppLoadError,
    ErrorCode.AGGREGATION: AggregationError,
    ErrorCode.NOT_ENOUGH_NODES: NotEnoughNodesError,
    ErrorCode.EXECUTION: ExecutionError,
    ErrorCode.PERMISSION_DENIED: PermissionDeniedError,
}


def _failing_with(code: ErrorCode, reason: str) -> CorollaError:
    """An error with ``code`` that a servicer can end a call with."""
    if code in REBUILT:
        return REBUILT[code](reason)
    error = CorollaError(reason)
    error.code = code
    return error


@pytest.mark.parametrize("code", list(ErrorCode), ids=lambda code: code.name)
def test_a_code_and_reason_become_the_error_of_that_code(code: ErrorCode) -> None:
    error = error_from_code(int(code), "the reply was refused")

    if code in REBUILT:
        assert type(error) is REBUILT[code]
        assert str(error) == "the reply was refused"
    else:
        status = STATUS_FOR_CODE[code].name
        assert isinstance(error, TransportError)
        assert (error.status, error.code) == (status, code)
        assert str(error) == f"{status}: the reply was refused"
    assert error.code == code


@pytest.mark.parametrize("code", list(ErrorCode), ids=lambda code: code.name)
def test_a_code_in_a_response_gives_what_a_call_failing_with_it_gives(
    fleet: Any, code: ErrorCode
) -> None:
    servicer, stub = fleet
    servicer.error = _failing_with(code, "refused for a reason")
    with pytest.raises(CorollaError) as caught, translate_rpc_errors():
        stub.Heartbeat(fleet_pb2.HeartbeatRequest(), timeout=10)
    from_rpc = caught.value

    from_code = error_from_code(int(code), "refused for a reason")

    assert type(from_code) is type(from_rpc)
    assert str(from_code) == str(from_rpc)
    assert from_code.code == from_rpc.code == code
    if isinstance(from_rpc, TransportError):
        assert isinstance(from_code, TransportError)
        assert (from_code.status, from_code.retryable) == (from_rpc.status, from_rpc.retryable)


@pytest.mark.parametrize("code", [9999, -1, 2**40])
def test_a_code_from_a_newer_peer_is_unknown(code: int) -> None:
    error = error_from_code(code, "something new")

    assert isinstance(error, TransportError)
    assert (error.code, error.status) == (ErrorCode.UNKNOWN, "UNKNOWN")
    assert str(error) == "UNKNOWN: something new"
    assert not error.retryable
