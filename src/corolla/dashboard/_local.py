"""The dashboard over local runs (``corolla dashboard``): the output directories that
``corolla run`` writes, read from disk instead of from a link's state.

:class:`LocalRuns` reads a directory of runs: each subdirectory holding a ``run.json`` is
a run, named by its directory's name, its rounds read from ``history.json`` and its final
arrays from ``final.npz``. :func:`build_local_app` serves the link's dashboard pages from
it (the same static files), with the endpoints those pages read that make sense without
a link: runs, a run, its downloads and its ``report.html``, compare, and a stream that
says when the runs changed. Nodes, the federation, participation, events and stop need
a link: the page says so (``/api/me`` answers ``"local": true``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import re
import threading
import zipfile
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from corolla.core import ConfigError
from corolla.state import UnknownRunError

from ._app import _differing_keys, _int, _Refused, closed_within, event_stream, index_page
from ._data import _finite

__all__ = ["MAX_RUNS", "LocalRun", "LocalRuns", "build_local_app"]

#: The most runs listed: the newest, by the time of their ``run.json``.
MAX_RUNS = 1000

#: Seconds between two scans of the runs directory for ``/api/stream``.
STREAM_INTERVAL_S = 2.0

#: What a run's id (its directory's name) may be made of: it goes into URLs as is.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,199}")

#: Sort keys of ``/api/runs``.
_SORTS = ("created", "run_id", "status", "app", "duration", "nodes", "backend", "rounds_done")


@dataclasses.dataclass(frozen=True)
class LocalRun:
    """One run directory as the pages show it; ``error`` says why it is unreadable."""

    run_id: str
    path: Path
    ended: float
    info: Mapping[str, Any]
    rounds: list[dict[str, Any]]
    error: str | None = None

    @property
    def status(self) -> str:
        return "unreadable" if self.error is not None else "finished"

    def summary(self) -> dict[str, Any]:
        """The run as the runs page lists it (``run_json``'s keys, and a few of a
        simulation's own)."""
        info = self.info
        total = info.get("total_s")
        duration = float(total) if isinstance(total, int | float) else None
        config = info.get("run_config")
        planned = config.get("num-server-rounds") if isinstance(config, Mapping) else None
        last = self.rounds[-1] if self.rounds else {}
        summary: dict[str, Any] = _finite(
            {
                "run_id": self.run_id,
                "status": self.status,
                "app": info.get("app"),
                "by": None,
                "created": self.ended - (duration or 0.0),
                "started": self.ended - (duration or 0.0),
                "ended": self.ended,
                "duration": duration,
                "rounds_done": sum(1 for r in self.rounds if r.get("round", 0) > 0),
                "num_rounds": planned if isinstance(planned, int) else None,
                "nodes": info.get("nodes"),
                "backend": info.get("backend"),
                "link": info.get("link"),
                "seed": info.get("seed"),
                "error": self.error,
                "metrics": {
                    phase: dict(last[phase])
                    for phase in ("train", "evaluate", "server")
                    if isinstance(last.get(phase), Mapping) and last[phase]
                },
            }
        )
        return summary

    def arrays(self) -> list[dict[str, Any]]:
        """The arrays in ``final.npz`` (name and stored size), none if it is missing or
        unreadable."""
        try:
            with zipfile.ZipFile(self.path / "final.npz") as npz:
                return [
                    {"name": i.filename.removesuffix(".npy"), "size": i.file_size}
                    for i in npz.infolist()
                ]
        except (OSError, zipfile.BadZipFile):
            return []


class LocalRuns:
    """The runs in ``directory``: each subdirectory holding a ``run.json``.

    Every call scans the directory again (so a run that finishes while the dashboard is
    open appears), and reads again only the runs whose files changed since.

    Raises
    ------
    ConfigError
        If ``directory`` is missing, is a file, or is itself one run's directory.
    """

    def __init__(self, directory: str | Path) -> None:
        path = Path(directory)
        if not path.is_dir():
            what = "is a file" if path.exists() else "does not exist"
            raise ConfigError(
                f"the runs directory {path} {what}: `corolla run APP` writes runs into "
                "~/.corolla/runs (or $COROLLA_HOME/runs); give --runs DIR for another one"
            )
        if (path / "run.json").is_file():
            raise ConfigError(
                f"{path} is one run's output directory: give the directory that holds "
                f"runs, such as --runs {path.resolve().parent}"
            )
        self.directory = path
        self._root = path.resolve()
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[tuple[int, ...], LocalRun]] = {}

    def scan(self) -> list[LocalRun]:
        """The newest :data:`MAX_RUNS` runs, newest first."""
        found: list[tuple[float, str]] = []
        with os.scandir(self.directory) as entries:
            for entry in entries:
                try:
                    if not entry.is_dir():
                        continue
                    found.append((os.stat(Path(entry.path) / "run.json").st_mtime, entry.name))
                except OSError:
                    continue  # not a run, or gone meanwhile
        found.sort(key=lambda item: (-item[0], item[1]))
        runs = []
        with self._lock:
            for _, name in found[:MAX_RUNS]:
                runs.append(self._read(name))
            kept = {r.run_id for r in runs}
            self._cache = {k: v for k, v in self._cache.items() if k in kept}
        return runs

    def signature(self) -> list[Any]:
        """What changes when a run is added, removed or rewritten."""
        return [[r.run_id, r.ended, r.status] for r in self.scan()]

    def get(self, run_id: str) -> LocalRun:
        """The run named ``run_id``.

        Raises
        ------
        UnknownRunError
            If ``run_id`` is not a run of the directory: a malformed name, a path, or a
            directory without ``run.json``.
        """
        path = self._path(run_id)
        if not (path / "run.json").is_file():
            raise UnknownRunError(f"no run {run_id!r} in {self.directory}")
        with self._lock:
            return self._read(run_id)

    def _path(self, run_id: str) -> Path:
        if not _NAME.fullmatch(run_id):  # no "/", and not "." nor ".."
            raise UnknownRunError(f"no run {run_id!r}: a run is named by its directory's name")
        path = self._root / run_id
        try:
            inside = path.resolve().parent == self._root
        except OSError:
            inside = False
        if not inside:
            raise UnknownRunError(f"no run {run_id!r}: it is not inside {self.directory}")
        return path

    def _read(self, name: str) -> LocalRun:
        path = self.directory / name
        stamp: list[int] = []
        for file in ("run.json", "history.json"):
            try:
                stat = os.stat(path / file)
                stamp += [stat.st_mtime_ns, stat.st_size]
            except OSError:
                stamp += [-1, -1]
        cached = self._cache.get(name)
        if cached is not None and cached[0] == tuple(stamp):
            return cached[1]
        run = _read_run(name, path, self._root)
        self._cache[name] = (tuple(stamp), run)
        return run


def _read_run(name: str, path: Path, root: Path) -> LocalRun:
    ended = 0.0
    with contextlib.suppress(OSError):
        ended = os.stat(path / "run.json").st_mtime

    def unreadable(reason: str, info: Mapping[str, Any] | None = None) -> LocalRun:
        return LocalRun(name, path, ended, info or {}, [], error=reason)

    if not _NAME.fullmatch(name):
        return unreadable(
            "its directory's name is not a run id (letters, digits, '.', '_', '+', '-'): "
            "rename it to see it"
        )
    try:
        if path.resolve().parent != root:
            return unreadable(f"it links outside {root}")
    except OSError as exc:
        return unreadable(f"cannot be read: {exc.strerror}")
    info = _json_file(path / "run.json")
    if isinstance(info, str):
        return unreadable(info)
    if not isinstance(info, dict):
        return unreadable("run.json is not a JSON object")
    history = _json_file(path / "history.json")
    if isinstance(history, str):
        return unreadable(history, info)
    rounds = history.get("rounds") if isinstance(history, dict) else None
    if not isinstance(rounds, list) or not all(
        isinstance(r, dict) and isinstance(r.get("round"), int) for r in rounds
    ):
        return unreadable('history.json is not {"rounds": [{"round": N, ...}, ...]}', info)
    return LocalRun(name, path, ended, info, sorted(rounds, key=lambda r: int(r["round"])))


def _json_file(path: Path) -> Any:
    """The JSON value in ``path``, or a sentence saying why it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return f"{path.name} is missing"
    except (OSError, UnicodeDecodeError) as exc:
        return f"{path.name} cannot be read: {exc}"
    try:
        return json.loads(text)
    except ValueError as exc:
        return f"{path.name} is not valid JSON ({exc})"


def _sort_value(value: Any) -> float | str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return str(value)


def build_local_app(
    runs: LocalRuns,
    static_dir: str,
    lifespan: Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]] | None = None,
    closing: Callable[[], asyncio.Event | None] = lambda: None,
) -> Starlette:
    """The dashboard's pages over ``runs``, served from ``static_dir``; ``lifespan`` runs
    while it serves, and event streams end once the event ``closing()`` returns is set."""

    def endpoint(handler: Callable[[Request], Any]) -> Callable[[Request], Response]:
        def wrapped(request: Request) -> Response:
            try:
                result = handler(request)
            except _Refused as exc:
                return JSONResponse({"error": str(exc)}, exc.status)
            except UnknownRunError as exc:
                return JSONResponse({"error": str(exc)}, 404)
            except OSError as exc:
                return JSONResponse({"error": f"cannot read the runs: {exc}"}, 500)
            return result if isinstance(result, Response) else JSONResponse(result)

        return wrapped

    def me(request: Request) -> Response:
        return JSONResponse(
            {
                "accounts": False,
                "local": True,
                "name": None,
                "may_stop": False,
                "runs": str(runs.directory),
            }
        )

    def list_runs(request: Request) -> Any:
        sort = request.query_params.get("sort") or "created"
        if sort not in _SORTS:
            raise _Refused(400, f"cannot sort by {sort!r}; use one of {', '.join(_SORTS)}")
        status = request.query_params.get("status") or ""
        text = request.query_params.get("q", "").lower()
        limit = _int(request, "limit", 50, low=1, high=MAX_RUNS)
        offset = _int(request, "offset", 0)
        found = [r.summary() for r in runs.scan()]
        found = [
            r
            for r in found
            if (not status or r["status"] == status)
            and (
                not text
                or any(text in str(r.get(k) or "").lower() for k in ("run_id", "app", "backend"))
            )
        ]
        found.sort(key=lambda r: r["run_id"])
        # Numbers before text (a run.json may hold either), runs without the value last.
        known = sorted(
            (r for r in found if r[sort] is not None),
            key=lambda r: (isinstance(r[sort], str), _sort_value(r[sort])),
            reverse=request.query_params.get("desc", "1") != "0",
        )
        found = known + [r for r in found if r[sort] is None]
        return {"runs": found[offset : offset + limit], "total": len(found)}

    def detail(run: LocalRun) -> dict[str, Any]:
        config = run.info.get("run_config")
        return {
            **run.summary(),
            "config": _finite(dict(config) if isinstance(config, Mapping) else {}),
            "rounds": _finite(run.rounds),
        }

    def one_run(request: Request) -> Any:
        run = runs.get(request.path_params["run_id"])
        return {
            **detail(run),
            "arrays": run.arrays(),
            "report": (run.path / "report.html").is_file(),
        }

    def run_file(
        request: Request, name: str, media_type: str, *, download: bool = True, **headers: str
    ) -> FileResponse:
        """A file of the run the request names, or 404 if the run has none."""
        run = runs.get(request.path_params["run_id"])
        if not (run.path / name).is_file():
            raise _Refused(404, f"run {run.run_id} has no {name}")
        filename = f"{run.run_id}-{name}" if download else None
        return FileResponse(
            run.path / name, media_type=media_type, filename=filename, headers=headers
        )

    def history(request: Request) -> Any:
        return run_file(request, "history.json", "application/json")

    def arrays(request: Request) -> Any:
        return run_file(request, "final.npz", "application/octet-stream")

    def report(request: Request) -> Any:
        # The report is one page with its image inside: it needs nothing else, runs nothing.
        policy = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
        headers = {"content-security-policy": policy}
        return run_file(request, "report.html", "text/html", download=False, **headers)

    def compare(request: Request) -> Any:
        ids = [t.strip() for t in request.query_params.get("runs", "").split(",") if t.strip()]
        if not 1 <= len(ids) <= 10:
            raise _Refused(400, "compare 1 to 10 runs: ?runs=ID,ID")
        compared = [detail(runs.get(run_id)) for run_id in ids]
        return {"runs": compared, "differs": _differing_keys([r["config"] for r in compared])}

    def needs_link(request: Request) -> Response:
        return JSONResponse(
            {"error": "this page needs a link: local runs have no nodes, events or traffic"},
            404,
        )

    def unknown(request: Request) -> Response:
        return JSONResponse({"error": f"no such page: {request.url.path}"}, 404)

    async def stream(request: Request) -> Response:
        async def changes() -> AsyncIterator[str]:
            last = None
            yield "retry: 2000\n\n"
            while True:
                try:
                    now = await run_in_threadpool(runs.signature)
                except OSError:
                    now = None
                if now != last:
                    last = now
                    yield f"data: {json.dumps({'runs': len(now or [])})}\n\n"
                if await closed_within(closing(), STREAM_INTERVAL_S):
                    return

        return event_stream(changes())

    routes = [
        Route("/", index_page(static_dir)),
        Route("/api/me", me),
        Route("/api/runs", endpoint(list_runs)),
        Route("/api/runs/{run_id}", endpoint(one_run)),
        Route("/api/runs/{run_id}/history.json", endpoint(history)),
        Route("/api/runs/{run_id}/arrays.npz", endpoint(arrays)),
        Route("/api/runs/{run_id}/report.html", endpoint(report)),
        Route("/api/compare", endpoint(compare)),
        Route("/api/stream", stream),
        *(
            Route(path, needs_link, methods=["GET", "POST"])
            for path in (
                "/api/nodes",
                "/api/federation",
                "/api/login",
                "/api/runs/{run_id}/participation",
                "/api/runs/{run_id}/failures",
                "/api/runs/{run_id}/events",
                "/api/runs/{run_id}/stop",
            )
        ),
        Route("/api/{rest:path}", unknown, methods=["GET", "POST"]),
        Mount("/static", StaticFiles(directory=static_dir), name="static"),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
