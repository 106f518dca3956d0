"""The dashboard's Starlette application: the page, its static files, and JSON endpoints.

Every endpoint that reads the state is a plain function, which Starlette runs on its
thread pool, so that no read holds the server's event loop (nor the link's, which is
another). ``/api/stream`` sends a server-sent event whenever the state's totals change
(checked every second), and the page then reads again what it shows.

Endpoints (all JSON unless said; run and node ids are strings, being wider than
JavaScript's exact integers):

- ``GET /api/me``; ``POST /api/login`` (``{"name", "password"}``); ``POST /api/logout``;
- ``GET /api/runs?limit&offset&sort&desc&status&q``;
- ``GET /api/runs/{id}`` (with its config and rounds), ``.../participation?phase&rows``,
  ``.../failures?round&first&last``, ``.../events?after&before&limit``;
  ``POST .../stop`` (operators); ``GET .../history.json`` and ``.../arrays.npz``
  (downloads);
- ``GET /api/compare?runs=ID,ID,...``; ``GET /api/nodes?limit&offset&online``;
  ``GET /api/federation``; ``GET /api/stream`` (``text/event-stream``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from corolla.core import AuthenticationError, ConfigError, CorollaError
from corolla.state import (
    RunInfo,
    RunStatus,
    RunStatusError,
    SqliteStateViews,
    UnknownRunError,
)
from corolla.trust import Role

from ._data import (
    arrays_npz,
    event_json,
    failure_json,
    history_json,
    node_json,
    participation_json,
    run_json,
    totals_json,
)
from ._federation import FederationSamples
from ._sessions import COOKIE, OPEN_VIEWER, SESSION_S, Sessions, Viewer

__all__ = ["DashboardSource", "build_app"]

#: Seconds between two checks of the state for ``/api/stream``.
STREAM_INTERVAL_S = 1.0


@dataclasses.dataclass
class DashboardSource:
    """Where the dashboard reads and acts: the state's views, and the link's own calls."""

    views: SqliteStateViews
    #: Stops a run: ``(run_id, reason, actor)``.
    stop_run: Callable[[int, str, str], RunInfo]
    #: The bytes of a blob (a final array).
    open_blob: Callable[[str], memoryview]
    #: Samples of the link's traffic and nodes over time.
    federation: FederationSamples
    #: The link's accounts; None on a link without them.
    sessions: Sessions | None
    #: Set when the server stops: event streams end.
    closing: asyncio.Event | None = None
    #: Whether the page is served over HTTPS (the session cookie is then Secure).
    https: bool = False


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _int(request: Request, name: str, default: int, *, low: int = 0, high: int = 10**9) -> int:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise _Refused(400, f"{name} must be a whole number, got {text!r}") from None
    if not low <= value <= high:
        raise _Refused(400, f"{name} must be from {low} to {high}, got {value}")
    return value


def _run_id(request: Request) -> int:
    text = request.path_params["run_id"]
    if not text.isdigit():
        raise _Refused(404, f"no run {text!r}: run ids are whole numbers")
    return int(text)


def build_app(
    source: DashboardSource,
    static_dir: str,
    lifespan: Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]] | None = None,
) -> Starlette:
    """The dashboard as an ASGI application reading from ``source``, serving the page
    and its scripts from ``static_dir``; ``lifespan`` runs while it serves."""
    views = source.views

    def viewer_of(request: Request) -> Viewer | None:
        if source.sessions is None:
            return OPEN_VIEWER
        return source.sessions.viewer(request.cookies.get(COOKIE))

    def endpoint(
        handler: Callable[[Request, Viewer], Any], *, role: Role = Role.VIEWER
    ) -> Callable[[Request], Response]:
        def wrapped(request: Request) -> Response:
            try:
                viewer = viewer_of(request)
                if viewer is None:
                    raise _Refused(401, "log in to see this link's dashboard")
                if not viewer.may(role):
                    raise _Refused(
                        403,
                        f"this needs the {role.value} role; {viewer.name} is a {viewer.role.value}",
                    )
                if request.method == "POST":
                    _check_origin(request)
                result = handler(request, viewer)
            except _Refused as exc:
                return JSONResponse({"error": str(exc)}, exc.status)
            except UnknownRunError as exc:
                return JSONResponse({"error": str(exc)}, 404)
            except RunStatusError as exc:
                return JSONResponse({"error": str(exc)}, 409)
            except ConfigError as exc:
                return JSONResponse({"error": str(exc)}, 400)
            except CorollaError as exc:
                return JSONResponse({"error": str(exc)}, 500)
            return result if isinstance(result, Response) else JSONResponse(result)

        return wrapped

    def me(request: Request) -> Response:
        viewer = viewer_of(request)
        if viewer is None:
            return JSONResponse({"accounts": True, "name": None})
        return JSONResponse(
            {
                "accounts": viewer.accounts,
                "name": viewer.name,
                "role": viewer.role.value,
                "may_stop": viewer.may(Role.OPERATOR),
            }
        )

    async def login(request: Request) -> Response:
        if source.sessions is None:
            return JSONResponse({"error": "this link has no accounts: nobody logs in"}, 400)
        try:
            _check_origin(request)
            body = await request.json()
            name, password = str(body["name"]), str(body["password"])
        except _Refused as exc:
            return JSONResponse({"error": str(exc)}, exc.status)
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": 'send {"name": ..., "password": ...}'}, 400)
        sessions = source.sessions
        peer = f"{request.client.host}:{request.client.port}" if request.client else "unknown"
        try:
            viewer, cookie = await run_in_threadpool(sessions.login, name, password, peer)
        except AuthenticationError as exc:
            return JSONResponse({"error": str(exc)}, 401)
        response = JSONResponse({"name": viewer.name, "role": viewer.role.value})
        response.set_cookie(
            COOKIE,
            cookie,
            max_age=int(SESSION_S),
            httponly=True,
            samesite="strict",
            secure=source.https,
        )
        return response

    def logout(request: Request) -> Response:
        response = JSONResponse({})
        response.delete_cookie(COOKIE, httponly=True, samesite="strict", secure=source.https)
        return response

    def runs(request: Request, viewer: Viewer) -> Any:
        status_text = request.query_params.get("status") or None
        try:
            status = None if status_text is None else RunStatus(status_text)
        except ValueError:
            statuses = ", ".join(s.value for s in RunStatus)
            raise _Refused(400, f"unknown status {status_text!r}; use one of {statuses}") from None
        now = time.time()
        page, total = views.runs(
            limit=_int(request, "limit", 50, low=1, high=1000),
            offset=_int(request, "offset", 0),
            sort=request.query_params.get("sort") or "created",
            descending=request.query_params.get("desc", "1") != "0",
            status=status,
            text=request.query_params.get("q", ""),
            now=now,
        )
        return {"runs": [run_json(s, now) for s in page], "total": total}

    def run(request: Request, viewer: Viewer) -> Any:
        run_id = _run_id(request)
        summary = views.run(run_id)
        result = views.last_event(run_id, "run.result")
        arrays = [] if result is None else list(result.event.data.get("arrays") or [])
        return {
            **run_json(summary, time.time()),
            "config": dict(summary.run.run_config),
            "rounds": views.rounds(run_id),
            "arrays": [{"name": a.get("name"), "size": a.get("size")} for a in arrays],
        }

    def participation(request: Request, viewer: Viewer) -> Any:
        found = views.participation(
            _run_id(request),
            phase=request.query_params.get("phase", "all"),
            max_rows=_int(request, "rows", 100, low=1, high=1000),
        )
        return participation_json(found)

    def failures(request: Request, viewer: Viewer) -> Any:
        last = request.query_params.get("last")
        found = views.failures(
            _run_id(request),
            round=request.query_params.get("round") or None,
            first_node=_int(request, "first", 0, high=2**63),
            last_node=None if not last else _int(request, "last", 0, high=2**63),
            limit=_int(request, "limit", 50, low=1, high=1000),
        )
        return {"failures": [failure_json(f) for f in found]}

    def events(request: Request, viewer: Viewer) -> Any:
        before = request.query_params.get("before")
        found = views.events(
            _run_id(request),
            after=_int(request, "after", 0, high=2**63),
            before=None if not before else _int(request, "before", 0, high=2**63),
            limit=_int(request, "limit", 200, low=1, high=1000),
        )
        return {"events": [event_json(e) for e in found]}

    def history(request: Request, viewer: Viewer) -> Any:
        run_id = _run_id(request)
        return Response(
            history_json(views.rounds(run_id)),
            media_type="application/json",
            headers={"content-disposition": f'attachment; filename="run-{run_id}-history.json"'},
        )

    def arrays(request: Request, viewer: Viewer) -> Any:
        run_id = _run_id(request)
        result = views.last_event(run_id, "run.result")
        if result is None:
            raise _Refused(404, f"run {run_id} stored no final arrays (yet)")
        refs = [r for r in result.event.data.get("arrays") or [] if isinstance(r, Mapping)]
        return Response(
            arrays_npz(refs, source.open_blob),
            media_type="application/octet-stream",
            headers={"content-disposition": f'attachment; filename="run-{run_id}-arrays.npz"'},
        )

    def stop(request: Request, viewer: Viewer) -> Any:
        run_id = _run_id(request)
        actor = viewer.name
        if not viewer.accounts and request.client is not None:
            actor = f"anonymous (dashboard {request.client.host})"
        stopped = source.stop_run(run_id, "stopped from the dashboard", actor)
        return {"run_id": str(stopped.run_id), "status": stopped.status.value}

    def compare(request: Request, viewer: Viewer) -> Any:
        ids = [t for t in request.query_params.get("runs", "").split(",") if t.strip()]
        if not 1 <= len(ids) <= 10:
            raise _Refused(400, "compare 1 to 10 runs: ?runs=ID,ID")
        if not all(t.strip().isdigit() for t in ids):
            raise _Refused(400, f"run ids are whole numbers, got {','.join(ids)}")
        now = time.time()
        compared = []
        for text in ids:
            summary = views.run(int(text))
            compared.append(
                {
                    **run_json(summary, now),
                    "config": dict(summary.run.run_config),
                    "rounds": views.rounds(int(text)),
                }
            )
        return {"runs": compared, "differs": _differing_keys([r["config"] for r in compared])}

    def nodes(request: Request, viewer: Viewer) -> Any:
        online_text = request.query_params.get("online")
        online = None if not online_text else online_text == "1"
        page, total = views.nodes(
            limit=_int(request, "limit", 100, low=1, high=1000),
            offset=_int(request, "offset", 0),
            online=online,
        )
        return {"nodes": [node_json(s) for s in page], "total": total}

    def federation(request: Request, viewer: Viewer) -> Any:
        return {
            "totals": totals_json(views.totals()),
            "samples": source.federation.samples(),
        }

    async def stream(request: Request) -> Response:
        if viewer_of(request) is None:
            return JSONResponse({"error": "log in to see this link's dashboard"}, 401)

        async def changes() -> AsyncIterator[str]:
            last = None
            yield "retry: 2000\n\n"
            while True:
                totals = totals_json(await run_in_threadpool(views.totals))
                if totals != last:
                    last = totals
                    yield f"data: {json.dumps(totals)}\n\n"
                if await closed_within(source.closing, STREAM_INTERVAL_S):
                    return

        return event_stream(changes())

    routes = [
        Route("/", index_page(static_dir)),
        Route("/api/me", me),
        Route("/api/login", login, methods=["POST"]),
        Route("/api/logout", logout, methods=["POST"]),
        Route("/api/runs", endpoint(runs)),
        Route("/api/runs/{run_id}", endpoint(run)),
        Route("/api/runs/{run_id}/participation", endpoint(participation)),
        Route("/api/runs/{run_id}/failures", endpoint(failures)),
        Route("/api/runs/{run_id}/events", endpoint(events)),
        Route("/api/runs/{run_id}/history.json", endpoint(history)),
        Route("/api/runs/{run_id}/arrays.npz", endpoint(arrays)),
        Route("/api/runs/{run_id}/stop", endpoint(stop, role=Role.OPERATOR), methods=["POST"]),
        Route("/api/compare", endpoint(compare)),
        Route("/api/nodes", endpoint(nodes)),
        Route("/api/federation", endpoint(federation)),
        Route("/api/stream", stream),
        Mount("/static", StaticFiles(directory=static_dir), name="static"),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def _check_origin(request: Request) -> None:
    """Refuse a POST sent by another site's page (the session cookie is SameSite=Strict
    too; this also covers a link without accounts, which has no cookie)."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    if urlsplit(origin).netloc != request.headers.get("host"):
        raise _Refused(403, f"a request from {origin} is refused: use the dashboard's own page")


async def closed_within(closing: asyncio.Event | None, seconds: float) -> bool:
    """Wait ``seconds``, less if the server starts closing (``closing`` is set, or None
    before the server made it); whether it is closing."""
    if closing is None:
        await asyncio.sleep(seconds)
        return False
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(closing.wait(), seconds)
    return closing.is_set()


def event_stream(events: AsyncIterator[str]) -> StreamingResponse:
    """Server-sent ``events``, never cached."""
    return StreamingResponse(
        events, media_type="text/event-stream", headers={"cache-control": "no-store"}
    )


def index_page(static_dir: str) -> Callable[[Request], Response]:
    """The endpoint of ``/``: the single page, never cached (it names the scripts)."""

    def index(request: Request) -> Response:
        return FileResponse(f"{static_dir}/index.html", headers={"cache-control": "no-store"})

    return index


def _differing_keys(configs: Sequence[Mapping[str, Any]]) -> list[str]:
    """The config keys whose values are not the same in every config (missing counts)."""
    keys = sorted({k for config in configs for k in config})
    missing = object()
    return [
        k for k in keys if len({json.dumps(c.get(k, missing), default=str) for c in configs}) > 1
    ]
