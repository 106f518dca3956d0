"""The ServerApp processes of a link: one child process per run.

A run's process gets the address of the link's loopback ServerAppIo service and a
secret (in its environment, not its command line) that names the run there. Its
output becomes ``log`` events of the run, as plain text (without the escape sequences
that colour a terminal: Flower's log lines have them); its exit ends the run:
``finished`` for status 0, ``failed`` otherwise (with the last lines of its output as
the reason), unless a user stopped the run first.

A link restarted after a crash starts a new process for each run its predecessor left
``starting`` or ``running`` (:meth:`RunProcesses.resume`); the ServerApp's strategy goes on
from the run's last checkpoint (see ``Strategy.start``).
"""

from __future__ import annotations

import collections
import json
import logging
import os
import re
import secrets
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from corolla.core import Event
from corolla.state import DirectoryBlobStore, RunInfo, RunStatus, RunStatusError

from .._audit import audit, reason_summary
from .._bundle import install_bundle
from ..serverapp import BLOBS_ENV, RUN_CONFIG_ENV, SECRET_ENV
from ._collection import collect_released, collect_run
from ._resources import LinkResources
from ._wakeups import events_key, replies_key

__all__ = ["RunProcesses", "absolute_search_path", "installed_app", "plain_text"]

_log = logging.getLogger("corolla.runtime.link")

_TAIL_LINES = 20
#: A terminal's escape sequences: CSI (``ESC [ ... letter``, colours among them), OSC
#: (``ESC ] ... BEL`` or ``ESC ] ... ESC \\``), and the two-character ones (``ESC`` and one of
#: ``@`` to ``_``).
_ESCAPES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-_])")
#: Replies whose in-row contents one write drops, once their messages are released.
_DROP_BATCH = 100
_STOP_GRACE_S = 5.0


class RunProcesses:
    """Starts, watches and stops the ServerApp process of each run."""

    def __init__(self, shared: LinkResources, *, python: str = sys.executable) -> None:
        self._shared = shared
        self._python = python
        self._lock = threading.Lock()
        self._processes: dict[int, subprocess.Popen[str]] = {}
        self._watchers: dict[int, threading.Thread] = {}
        self._secrets: dict[str, int] = {}
        self._address = ""
        self._closing = threading.Event()
        self._retries: list[threading.Timer] = []
        # One collection at a time, each on a thread of its own (see collect_released).
        self._collecting = threading.Lock()
        self._collectors: list[threading.Thread] = []

    def set_address(self, address: str) -> None:
        """Where run processes reach the ServerAppIo service."""
        self._address = address

    def run_for_secret(self, secret: str) -> int | None:
        """The run a secret was issued to, while its process lives."""
        with self._lock:
            return self._secrets.get(secret)

    def issue_secret(self, run_id: int) -> str:
        """A new secret naming ``run_id`` on the ServerAppIo service (revoke it when done)."""
        secret = secrets.token_urlsafe(32)
        with self._lock:
            self._secrets[secret] = run_id
        return secret

    def revoke_secret(self, secret: str) -> None:
        with self._lock:
            self._secrets.pop(secret, None)

    def is_active(self, run_id: int) -> bool:
        """Whether the run's process lives, or its end is not recorded yet."""
        with self._lock:
            process = self._processes.get(run_id)
            watcher = self._watchers.get(run_id)
        if process is None:
            return False
        # The watcher records the end (the ``run.end`` event) after the process exits:
        # until then the run's event stream must not end.
        return process.poll() is None or (watcher is not None and watcher.is_alive())

    def launch(self, run: RunInfo) -> None:
        """Start the run's ServerApp process and mark the run running.

        Raises
        ------
        RunStatusError
            If the run is not pending.
        """
        self._shared.state.update_run_status(run.run_id, RunStatus.STARTING)
        self._spawn(run, resumed=False)

    def resume(self, run: RunInfo) -> None:
        """Start a new ServerApp process for a run whose process an earlier link lost (it
        is ``starting`` or ``running`` in the state); it goes on from the run's last
        checkpoint. The replies to the lost process's messages are never asked for again.

        Raises
        ------
        RunStatusError
            If the run is neither starting nor running.
        """
        if run.status not in (RunStatus.STARTING, RunStatus.RUNNING):
            raise RunStatusError(f"run {run.run_id} is {run.status.value}; it cannot resume")
        app_dir = installed_app(self._shared, run.bundle_hash)
        if not app_dir.is_dir() and self._shared.blobs.exists(run.bundle_hash):
            try:
                install_bundle(self._shared.blobs.open(run.bundle_hash), app_dir)
            except Exception as exc:
                self._end(run.run_id, RunStatus.FAILED, f"cannot reinstall the app: {exc}", None)
                return
        self._spawn(run, resumed=True)

    def _spawn(self, run: RunInfo, *, resumed: bool) -> None:
        shared = self._shared
        secret = self.issue_secret(run.run_id)
        env = dict(os.environ)
        env[SECRET_ENV] = secret
        env[RUN_CONFIG_ENV] = json.dumps(dict(run.run_config))
        if isinstance(self._shared.blobs, DirectoryBlobStore):  # read in place: ArrayCache
            env[BLOBS_ENV] = str(self._shared.blobs.root.resolve())
        env["PYTHONUNBUFFERED"] = "1"
        if env.get("PYTHONPATH"):
            # The process starts in the app's directory: a relative entry would find
            # another Corolla than the link's, or none.
            env["PYTHONPATH"] = absolute_search_path(env["PYTHONPATH"])
        app_dir = installed_app(shared, run.bundle_hash)
        command = [
            self._python,
            "-m",
            "corolla.runtime.serverapp",
            "--address",
            self._address,
            "--run-id",
            str(run.run_id),
            "--app-dir",
            str(app_dir),
        ]
        with self._lock:
            try:
                process = subprocess.Popen(
                    command,
                    env=env,
                    cwd=str(app_dir),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    errors="replace",
                )
            except OSError as exc:
                del self._secrets[secret]
                self._end(run.run_id, RunStatus.FAILED, f"cannot start the ServerApp: {exc}", None)
                return
            self._processes[run.run_id] = process
            watcher = threading.Thread(
                target=self._watch,
                args=(run.run_id, process, secret),
                name=f"corolla-run-{run.run_id}",
                daemon=True,
            )
            self._watchers[run.run_id] = watcher
        if shared.state.get_run(run.run_id).status is RunStatus.STARTING:
            shared.state.update_run_status(run.run_id, RunStatus.RUNNING)
        data: dict[str, object] = {"pid": process.pid}
        if resumed:
            data["resumed"] = True
        self._emit(Event("run.start", run.run_id, data=data))
        watcher.start()

    def _emit(self, event: Event) -> None:
        self._shared.state.append_event(event)
        self._shared.signals.notify([events_key(event.run_id)])

    def _watch(self, run_id: int, process: subprocess.Popen[str], secret: str) -> None:
        tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        assert process.stdout is not None
        for line in process.stdout:
            text = plain_text(line.rstrip("\n"))
            tail.append(text)
            try:
                self._emit(Event("log", run_id, data={"line": text}))
            except Exception:  # the state may be closing while the link stops
                _log.debug("log line of run %d dropped", run_id, exc_info=True)
        returncode = process.wait()
        self.revoke_secret(secret)
        if returncode == 0:
            self._end(run_id, RunStatus.FINISHED, None, returncode)
        else:
            self._end(run_id, RunStatus.FAILED, self._failure(run_id, returncode, tail), returncode)

    def _failure(self, run_id: int, returncode: int, tail: Sequence[str]) -> str:
        """Why a run's ServerApp failed: the error it reported (``run.error``), or the last
        lines of its output."""
        try:
            reported = self._shared.state.read_events(run_id, kind="run.error")
        except Exception:  # the state may be closing while the link stops
            reported = []
        if reported:
            data = reported[-1].event.data
            return f"{data.get('error', 'error')}: {data.get('reason', '')}"
        reason = f"the ServerApp exited with status {returncode}"
        return reason + (":\n" + "\n".join(tail) if tail else "")

    def _end(
        self, run_id: int, status: RunStatus, reason: str | None, returncode: int | None
    ) -> None:
        shared = self._shared
        try:
            try:
                shared.state.update_run_status(run_id, status, error=reason)
            except RunStatusError:  # stopped by a user meanwhile: that status and reason stand
                run = shared.state.get_run(run_id)
                status, reason = run.status, run.error
            self._emit(
                Event(
                    "run.end",
                    run_id,
                    data={"status": status.value, "reason": reason or "", "returncode": returncode},
                )
            )
        except Exception:
            _log.warning("could not record the end of run %d", run_id, exc_info=True)
            return
        finally:
            shared.signals.notify([replies_key(run_id), events_key(run_id)])
        audit(
            shared.audit,
            "run.end",
            {
                "run_id": run_id,
                "status": status.value,
                "reason": reason_summary(reason or ""),
                "returncode": returncode,
            },
        )
        # Nodes still running its messages (ones its ServerApp did not wait for) stop them.
        shared.run_ends.ended(run_id, status.value)
        self._collect(run_id)

    def collect_released(
        self,
        run_id: int,
        contents: Sequence[tuple[str, bytes | None]],
        message_ids: Sequence[str] = (),
    ) -> None:
        """Delete, on a thread of its own, what only these contents that live run
        ``run_id``'s ServerApp released named (see ``_collection``), then drop the contents
        the replies to ``message_ids`` keep in their rows: its next round goes on
        meanwhile."""
        if not (contents or message_ids) or self._closing.is_set():
            return
        thread = threading.Thread(
            target=self._collect_released,
            args=(run_id, contents, message_ids),
            name=f"corolla-collect-{run_id}",
            daemon=True,
        )
        with self._lock:  # started under the lock: close() joins only started threads
            if self._closing.is_set():
                return
            self._collectors = [t for t in self._collectors if t.is_alive()] + [thread]
            thread.start()

    def _collect_released(
        self, run_id: int, contents: Sequence[tuple[str, bytes | None]], message_ids: Sequence[str]
    ) -> None:
        state = self._shared.state
        with self._collecting:
            if self._closing.is_set():  # a link stopping collects the run once it ends
                return
            try:
                done = collect_released(
                    self._shared, run_id, contents, self._shared.clock.monotonic()
                )
                # A short write at a time, so that the run's next messages and replies
                # go between them.
                for start in range(0, len(message_ids), _DROP_BATCH):
                    if self._closing.is_set():
                        return
                    state.drop_released_contents(run_id, message_ids[start : start + _DROP_BATCH])
            except Exception:
                _log.warning("could not collect what run %d released", run_id, exc_info=True)
                return
        _log.debug(
            "run %d released: %d blobs (%d bytes) deleted, %d named lately",
            run_id,
            done.blobs,
            done.bytes,
            done.kept_named,
        )
        if done.kept_named:  # again once the clients that named them had time to
            self._retry(self.collect_released, run_id, contents)

    def _collect(self, run_id: int) -> None:
        if self._closing.is_set():  # a link stopping collects when it starts again
            return
        try:
            with self._collecting:
                done = collect_run(self._shared, run_id)
        except Exception:
            _log.warning("could not collect run %d", run_id, exc_info=True)
            return
        _log.info(
            "run %d collected: %d blobs (%d bytes), %d reply contents, %d named lately",
            run_id,
            done.blobs,
            done.bytes,
            done.reply_contents,
            done.kept_named,
        )
        if done.kept_named:  # again once the clients that named them had time to
            self._retry(self._collect, run_id)

    def _retry(self, collect: Callable[..., None], *args: object) -> None:
        retry = threading.Timer(self._shared.names.grace_s + 1.0, collect, args)
        retry.daemon = True
        with self._lock:
            if self._closing.is_set():
                return
            self._retries = [t for t in self._retries if t.is_alive()] + [retry]
        retry.start()

    def stop(self, run_id: int) -> None:
        """Terminate a run's process (its watcher records the end)."""
        with self._lock:
            process = self._processes.get(run_id)
        if process is not None and process.poll() is None:
            process.terminate()

    def close(self) -> None:
        """Terminate every process and join the watchers."""
        self._closing.set()
        with self._lock:
            for retry in self._retries:
                retry.cancel()
            processes = list(self._processes.values())
            watchers = list(self._watchers.values())
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for watcher in watchers:
            if watcher.ident is not None:
                watcher.join(_STOP_GRACE_S)
        with self._lock:
            collectors = list(self._collectors)
        for collector in collectors:
            collector.join(_STOP_GRACE_S)


def plain_text(line: str) -> str:
    """``line`` without terminal escape sequences (colours, cursor moves): a run's log is
    read in files, as JSON and on terminals of other widths, not only where it was
    written."""
    return _ESCAPES.sub("", line)


def absolute_search_path(value: str) -> str:
    """A ``PYTHONPATH`` whose relative entries are made absolute from this process's
    working directory (empty entries, which mean the working directory, too)."""
    return os.pathsep.join(os.path.abspath(entry or os.curdir) for entry in value.split(os.pathsep))


def installed_app(shared: LinkResources, bundle_hash: str) -> Path:
    """Where the link unpacks a bundle."""
    return shared.apps_dir / bundle_hash
