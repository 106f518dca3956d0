"""The node: the daemon on a data owner's machine (``corolla node``).

:class:`Node` connects outbound to a link, keeps its identity and its runs' context states
in its state directory (``_store``), and answers each message it is pushed by running the
run's ClientApp, sending replies on a stream of their own (``_reply_stream``).
"""

from ._node import ChannelFactory, Node, NodeStatus
from ._store import NodeStore

__all__ = ["ChannelFactory", "Node", "NodeStatus", "NodeStore"]
