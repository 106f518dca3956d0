"""The node: the daemon on a data owner's machine (``corolla node``).

:class:`Node` connects outbound to a link (``_node``), keeps its identity and its runs'
context states in its state directory (``_store``), and answers each message it is
pushed on a thread of its own (``_runner``), running each run's ClientApp in a child
process of its own (``_run_processes``), and sending replies on a stream of their own
(``_reply_stream``). Its connection to the link is a ``_session``; what a failed one
means is ``_connection``'s to say.
"""

from ._node import DEFAULT_MAX_MESSAGE_S, ChannelFactory, Node, NodeStatus
from ._run_processes import DEFAULT_RUN_PROCESSES
from ._store import NodeStore

__all__ = [
    "DEFAULT_MAX_MESSAGE_S",
    "DEFAULT_RUN_PROCESSES",
    "ChannelFactory",
    "Node",
    "NodeStatus",
    "NodeStore",
]
