"""A client of the link's Control API: submit a run, follow its events, fetch its result.

``corolla run --link``, ``corolla ls``, ``corolla log`` and tests are built on it.

A call that fails for a mistake in how the link was named is told apart from a link that
is down, and reported as a :class:`~corolla.core.ConfigError` that says what to pass:

- the address of the link's Fleet API (for nodes) instead of its Control API: the
  server does not know the call, and the port after it is tried as the Control port;
- no CA certificate for a link that serves TLS, or one for a link that does not: a TLS
  handshake tried on the address after the failure tells which the link speaks;
- a CA certificate that did not sign the link's certificate.

With ``token``, every call carries the account token ``corolla login`` obtained; a link
that refuses the token (or its absence) raises an
:class:`~corolla.core.AuthenticationError` that says how to log in.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import ssl
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

import grpc

from corolla.core import (
    ArrayRecord,
    AuthenticationError,
    CodecError,
    ConfigError,
    CorollaError,
    Event,
    UserConfigValue,
    decode_array,
)
from corolla.server import History, RunResult
from corolla.transport import (
    Address,
    TransportError,
    channel_credentials,
    channel_options,
    chunk_messages,
    control_pb2,
    control_pb2_grpc,
    event_from_proto,
    parse_address,
    requires_tls,
    run_pb2,
    serverappio_pb2_grpc,
    sha256_of,
    translate_rpc_errors,
    user_config_to_proto,
)
from corolla.trust import SigningKey

from ._accounts_client import AccountsClient, with_token
from ._bundle import make_bundle
from ._payloads import pull_payload, with_chunk_frames

__all__ = ["ControlClient"]

#: Seconds a diagnosis after a failed call waits for a TLS handshake or a probe call.
_PROBE_TIMEOUT_S = 2.0


class ControlClient:
    """Calls the Control API of the link at ``address``.

    Every call raises a :class:`~corolla.core.ConfigError` that says what to pass when
    ``address`` is the link's Fleet address, or when TLS is used on one side only or with
    the wrong CA; a :class:`~corolla.transport.TransportError` when no link answers.

    Raises
    ------
    ConfigError
        If a certificate file cannot be read.
    """

    def __init__(
        self,
        address: str,
        *,
        root_certificates: str | os.PathLike[str] | None = None,
        insecure: bool = False,
        token: str | None = None,
    ) -> None:
        self._address = address
        self._root_certificates = root_certificates
        self._secure = not insecure and (root_certificates is not None or requires_tls(address))
        self._raw_channel = self._open(address)
        self._channel = with_token(self._raw_channel, token)
        self._stub = control_pb2_grpc.ControlStub(self._channel)
        artifacts = serverappio_pb2_grpc.RunArtifactsStub(self._channel)
        self._artifacts = with_chunk_frames(artifacts, self._channel, "RunArtifacts")

    def _open(self, address: str) -> grpc.Channel:
        if self._secure:
            credentials = channel_credentials(self._root_certificates)
            return grpc.secure_channel(address, credentials, options=channel_options())
        return grpc.insecure_channel(address, options=channel_options())

    @property
    def accounts(self) -> AccountsClient:
        """The link's Accounts service (login, accounts, node keys), on this client's
        connection and token."""
        return AccountsClient(self._channel, self._calling)

    def close(self) -> None:
        self._channel.close()
        self._raw_channel.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def submit(
        self,
        app_dir: str | os.PathLike[str],
        run_config: Mapping[str, UserConfigValue] | None = None,
        *,
        timeout: float | None = 60.0,
        signing_keys: Sequence[SigningKey] = (),
    ) -> run_pb2.Run:
        """Bundle ``app_dir`` and submit it with run-config overrides, signed by
        ``signing_keys``; return the run.

        Raises
        ------
        CorollaError
            The link's answer (unknown config key, app that fails to load, an app its
            policy does not allow...) or a transport failure.
        """
        bundle = make_bundle(app_dir)
        digest = sha256_of(bundle)
        signatures = [key.sign_bundle(digest) for key in signing_keys]
        spec = control_pb2.RunSpec(
            bundle_sha256=digest,
            bundle_size=len(bundle),
            run_config=user_config_to_proto(dict(run_config or {})),
            bundle_signatures=[
                run_pb2.BundleSignature(public_key=s.public_key, signature=s.signature)
                for s in signatures
            ],
        )

        def requests() -> Iterator[control_pb2.SubmitRunRequest]:
            yield control_pb2.SubmitRunRequest(spec=spec)
            for chunk in chunk_messages(bundle, sha256=digest):
                yield control_pb2.SubmitRunRequest(bundle_chunk=chunk)

        with self._calling():
            return self._stub.SubmitRun(requests(), timeout=timeout).run

    def get_run(self, run_id: int) -> run_pb2.Run:
        """The run ``run_id`` as the link has it.

        Raises
        ------
        CorollaError
            If the run is unknown (ConfigError) or the link cannot be reached.
        """
        with self._calling():
            return self._stub.GetRun(run_pb2.GetRunRequest(run_id=run_id)).run

    def list_runs(self) -> list[run_pb2.Run]:
        """Every run of the link, the latest first.

        Raises
        ------
        CorollaError
            If the link cannot be reached.
        """
        with self._calling():
            return list(self._stub.ListRuns(control_pb2.ListRunsRequest()).runs)

    def stop_run(self, run_id: int, reason: str = "") -> run_pb2.Run:
        """Stop run ``run_id`` (a run that ended already stays as it ended).

        Raises
        ------
        CorollaError
            If the run is unknown or the link cannot be reached.
        """
        with self._calling():
            return self._stub.StopRun(control_pb2.StopRunRequest(run_id=run_id, reason=reason)).run

    def list_nodes(self) -> list[control_pb2.Node]:
        """Every node the link knows, online or offline.

        Raises
        ------
        CorollaError
            If the link cannot be reached.
        """
        with self._calling():
            return list(self._stub.ListNodes(control_pb2.ListNodesRequest()).nodes)

    def events(
        self, run_id: int, *, follow: bool = True, after: int = 0, timeout: float | None = None
    ) -> Iterator[tuple[int, Event]]:
        """The run's events as ``(sequence, event)``; with ``follow``, until the run ends.

        Raises
        ------
        CorollaError
            If the run is unknown, the stream breaks, or ``timeout`` passes.
        """
        request = control_pb2.StreamEventsRequest(
            run_id=run_id, after_sequence=after, follow=follow
        )
        call = self._stub.StreamEvents(request, timeout=timeout)
        try:
            with self._calling():
                for proto in call:
                    yield event_from_proto(proto)
        finally:
            # However the reader stops (Ctrl-C, an error, a break), the stream ends here
            # and now, not when the channel is collected: a follower interrupted while
            # the run waits must exit at once.
            call.cancel()

    def result(self, run_id: int) -> RunResult | None:
        """The result run ``run_id``'s ServerApp reported: its final arrays, downloaded and
        verified, and its history; None until it reported one.

        Raises
        ------
        CodecError
            If the history does not parse or a payload does not verify.
        CorollaError
            If the run is unknown or the link unreachable.
        """
        request = control_pb2.GetRunResultRequest(run_id=run_id)
        with self._calling():
            reported = self._stub.GetRunResult(request)
        if not reported.found:
            return None
        items: list[tuple[str, Any]] = []
        for ref in reported.arrays:
            with self._calling():
                view = pull_payload(self._artifacts.PullArrays, ref.sha256, ref.size)
            items.append((ref.name, decode_array(view)))
        history = None
        if reported.history_json:
            try:
                history = History.from_dict(json.loads(reported.history_json))
            except (ValueError, TypeError, KeyError) as exc:
                raise CodecError(f"run {run_id}'s history does not parse: {exc}") from exc
        return RunResult(ArrayRecord(items), history)

    @contextlib.contextmanager
    def _calling(self, *, login_hint: bool = True) -> Iterator[None]:
        """Translate a failed call, and say what to pass if the link was named wrongly, or
        (with ``login_hint``) how to log in if it refused the token."""
        try:
            with translate_rpc_errors():
                yield
        except AuthenticationError as exc:
            if not login_hint:
                raise
            raise self._log_in(str(exc)) from exc
        except TransportError as exc:
            if not login_hint and exc.status == "UNAUTHENTICATED":
                raise AuthenticationError(str(exc).removeprefix("UNAUTHENTICATED: ")) from exc
            diagnosis = self._diagnose(exc)
            if diagnosis is exc:
                raise
            raise diagnosis from exc

    def _log_in(self, why: str) -> AuthenticationError:
        """The error for a call the link refused for its token: why, and how to log in."""
        return AuthenticationError(
            f"the link at {self._address} refused the call: {why} "
            f"(`corolla login --link {self._address} --user NAME`)"
        )

    def _diagnose(self, error: TransportError) -> CorollaError:
        try:
            address = parse_address(self._address)
        except ConfigError:  # a gRPC target of another form (dns:///..., unix:...)
            return error
        if error.status == "UNAUTHENTICATED":
            return self._log_in(str(error).removeprefix(f"{error.status}: "))
        if error.status == "UNIMPLEMENTED":
            return self._not_control(address)
        if error.status != "UNAVAILABLE":
            return error
        text = str(error)
        speaks = _tls_probe(address)
        if speaks is None:
            why = "connection refused" if "refused" in text.lower() else "no answer"
            return TransportError(
                f"no link answers at {address} ({why}): is `corolla link` running, and is "
                "this its control address?",
                status=error.status,
                code=error.code,
            )
        if not self._secure and speaks == "tls":
            return ConfigError(
                f"the link at {address} serves TLS: give its CA certificate with "
                "--root-certificates FILE (the ca.pem that `corolla certs` wrote)"
            )
        if self._secure and speaks == "plain":
            steps = []
            if self._root_certificates is not None:
                steps.append("leave out --root-certificates")
            if requires_tls(str(address)):  # off loopback, a client insists on TLS
                steps.append("pass --insecure")
            return ConfigError(
                f"the link at {address} serves without TLS: {' and '.join(steps)} "
                "(or restart the link with --certificates DIR)"
            )
        if self._secure and "CERTIFICATE_VERIFY_FAILED" in text:
            ca = self._root_certificates
            which = f"the CA in {ca}" if ca is not None else "any CA this machine trusts"
            return ConfigError(
                f"the certificate of the link at {address} is not signed by {which}: give "
                "the ca.pem that signed the link's certificate with --root-certificates FILE"
            )
        return error

    def _not_control(self, address: Address) -> ConfigError:
        """The error for an address that answers but does not serve the Control API."""
        said = f"{address} is not the link's Control API: it is likely its Fleet API, for nodes"
        if address.port < 65535:
            # `corolla link` puts the Control API on the port after the Fleet API's
            # (9092, 9093) unless told otherwise: say so only if it answers there.
            neighbour = Address(address.host, address.port + 1)
            channel = self._open(str(neighbour))
            try:
                control_pb2_grpc.ControlStub(channel).ListRuns(
                    control_pb2.ListRunsRequest(), timeout=_PROBE_TIMEOUT_S
                )
            except grpc.RpcError as exc:
                # A link that requires accounts answers a call without a token so.
                answers = getattr(exc, "code", lambda: None)() in _ANSWERED
            else:
                answers = True
            finally:
                channel.close()
            if answers:
                return ConfigError(f"{said}; the Control API answers at {neighbour}: use that")
        return ConfigError(
            f"{said}; give the address `corolla link` printed after 'control' "
            "(port 9093 by default)"
        )


#: The statuses with which a link that requires accounts answers a call without a token.
_ANSWERED = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)


def _tls_probe(address: Address) -> str | None:
    """What ``address`` speaks: ``"tls"`` if a TLS handshake succeeds, ``"plain"`` if the
    server answers it with something else, None if nothing answers."""
    context = ssl.create_default_context()
    # Only whether the server speaks TLS matters here, not whom it proves to be.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    try:
        with (
            socket.create_connection(
                (address.host, address.port), timeout=_PROBE_TIMEOUT_S
            ) as sock,
            context.wrap_socket(sock, server_hostname=address.host),
        ):
            return "tls"
    except ssl.SSLError:
        return "plain"
    except OSError:
        return None
