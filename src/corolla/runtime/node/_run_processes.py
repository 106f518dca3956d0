"""The ClientApp processes of a node: one per run, kept while the run lives.

A node runs each run's ClientApp in a child process of its own, never in its own
process: a ClientApp that raises ``SystemExit``, calls ``os._exit``, crashes or hangs
costs an error reply, never the node. The process is a
:class:`~corolla.execution.ProcessExecutor` with one worker, which the simulation uses
too: the same ``execute_task`` runs the call, with the message's contents and the
reply's arrays in shared memory segments that are reused from message to message (a
100 MB model is copied once each way, never pickled through the pipe).

- It starts when the run's first message comes (loading the app from the installed
  bundle, in a working directory of its own under the node's state directory), and
  serves the run's next messages without loading the app again. It is forked from the
  process's fork server (:func:`~corolla.execution.start_forkserver`, started with the
  node), which imported the worker's modules once: not a new interpreter per run.
- A call that overruns its deadline is killed, as is a process that the link says
  ended its run (:meth:`RunProcesses.end`, from any thread). A process that died is
  started again only when the run's next message comes.
- A node keeps at most ``limit`` processes (:data:`DEFAULT_RUN_PROCESSES`): each holds
  its app's memory (a deep learning framework takes hundreds of MB), and a node usually
  serves one run at a time. A message of another run stops the process least recently
  used. A run's process also stops when the link says the run ended.
"""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Mapping

from corolla.core import ConfigError, Message, RecordDict, UserConfigValue
from corolla.execution import Call, ProcessExecutor, Task, start_forkserver
from corolla.project import ComponentRef

__all__ = ["DEFAULT_RUN_PROCESSES", "RunProcess", "RunProcesses"]

#: ClientApp processes a node keeps at most, by default.
DEFAULT_RUN_PROCESSES = 2
#: Run ids whose end a node remembers, to drop their messages still queued.
_ENDED_LIMIT = 1024


class RunProcess:
    """The ClientApp process of one run.

    Parameters
    ----------
    run_id
        The run.
    app
        The run's ClientApp, importable from its installed bundle.
    run_config
        Given to the ClientApp as ``Context.run_config``.
    working_dir
        Where the process runs (created if missing).

    Raises
    ------
    ConfigError
        If the reference cannot be sent to a process.
    """

    def __init__(
        self,
        run_id: int,
        app: ComponentRef,
        run_config: Mapping[str, UserConfigValue],
        working_dir: str | os.PathLike[str],
    ) -> None:
        self.run_id = run_id
        self._executor = ProcessExecutor(
            app,
            run_id,
            run_config,
            num_workers=1,
            working_dir=working_dir,
            lazy_restart=True,
            process_name=f"corolla-run-{run_id}",
            start_method="forkserver" if start_forkserver() else "spawn",
        )

    def start(self) -> None:
        """Start the process, which loads the app meanwhile: the first :meth:`call`
        waits for it (the node downloads the message's arrays meanwhile)."""
        self._executor.start(wait=False)

    def call(
        self,
        message: Message,
        node_id: int,
        node_config: Mapping[str, UserConfigValue],
        state: RecordDict,
        timeout: float,
    ) -> tuple[Message, RecordDict | None]:
        """Run the ClientApp for ``message`` with the node's context state; return the
        reply (an error reply if the app raised, its process died or it overran
        ``timeout`` seconds) and the new state (None if unchanged).

        Raises
        ------
        AppLoadError
            If the process (started, or started again after it died) cannot load the
            ClientApp.
        ExecutionError
            If the process does not start.
        """
        task = Task(0, [Call(message, node_id, node_config, state)])
        (result,) = self._executor.run([task], timeout=timeout)
        (reply,) = result.replies
        return reply, result.states.get(node_id)

    def kill(self) -> None:
        """Kill the process now (from any thread); a call it runs ends with an error."""
        self._executor.kill()

    def close(self) -> None:
        """Stop the process and free its shared memory."""
        self._executor.close()


class RunProcesses:
    """A node's run processes, at most ``limit`` of them, the least recently used let go
    first.

    The node's message thread gets, starts and closes processes; :meth:`end` may be
    called from any thread.

    Raises
    ------
    ConfigError
        If ``limit`` < 1.
    """

    def __init__(self, limit: int = DEFAULT_RUN_PROCESSES) -> None:
        if limit < 1:
            raise ConfigError(f"a node keeps at least one run process, not {limit}")
        self._limit = limit
        self._lock = threading.Lock()
        self._processes: collections.OrderedDict[int, RunProcess] = collections.OrderedDict()
        self._ended: collections.OrderedDict[int, str] = collections.OrderedDict()

    def get(self, run_id: int) -> RunProcess | None:
        """The run's process, if the node keeps one (it is now the most recently used)."""
        with self._lock:
            process = self._processes.get(run_id)
            if process is not None:
                self._processes.move_to_end(run_id)
            return process

    def add(self, process: RunProcess) -> list[int]:
        """Keep a started ``process``; stop the least recently used ones beyond the limit.
        Returns the ids of the runs whose processes were stopped."""
        with self._lock:
            self._processes[process.run_id] = process
            evicted = []
            while len(self._processes) > self._limit:
                evicted.append(self._processes.popitem(last=False)[1])
        for old in evicted:
            old.close()
        return [old.run_id for old in evicted]

    def end(self, run_id: int, reason: str) -> bool:
        """Run ``run_id`` ended: kill its process now (the message thread closes it). True
        if the node kept one. Safe from any thread."""
        with self._lock:
            self._ended[run_id] = reason
            if len(self._ended) > _ENDED_LIMIT:
                self._ended.popitem(last=False)
            process = self._processes.get(run_id)
        if process is not None:
            process.kill()
        return process is not None

    def ended(self, run_id: int) -> str | None:
        """Why run ``run_id`` ended, if the link said it did."""
        with self._lock:
            return self._ended.get(run_id)

    def close_ended(self) -> None:
        """Close the processes of the runs that ended."""
        with self._lock:
            gone = [p for run_id, p in self._processes.items() if run_id in self._ended]
            for process in gone:
                del self._processes[process.run_id]
        for process in gone:
            process.close()

    def kill_all(self) -> None:
        """Kill every process now (the node is stopping). Safe from any thread."""
        with self._lock:
            processes = list(self._processes.values())
        for process in processes:
            process.kill()

    def close(self) -> None:
        """Close every process."""
        with self._lock:
            processes = list(self._processes.values())
            self._processes.clear()
        for process in processes:
            process.close()
