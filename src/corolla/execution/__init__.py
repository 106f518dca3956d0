"""Running ClientApp calls: in this process, or in worker processes that load the app once.

The simulation runs its virtual nodes' calls here, and a deployment's node runs its
runs' ClientApps here too, each in a worker process of its own. One function runs a
ClientApp for one message with the node's context state, and folds the reply into an
aggregator when there is one (:func:`execute_task`); executors only decide where it runs:

- :class:`InlineExecutor`: in the calling process, one call after another;
- :class:`ProcessExecutor`: in worker processes connected by pipes, message contents in
  shared memory; a worker that dies or overruns its deadline is killed and replaced, and
  its calls become error replies.
"""

from ._executor import Call, Executor, InlineExecutor, Task, TaskResult, execute_task
from ._process import ProcessExecutor, start_forkserver

__all__ = [
    "Call",
    "Executor",
    "InlineExecutor",
    "ProcessExecutor",
    "Task",
    "TaskResult",
    "execute_task",
    "start_forkserver",
]
