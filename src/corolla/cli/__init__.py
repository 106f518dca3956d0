"""The ``corolla`` command line.

gRPC's core logs a failed TLS handshake (a client with the wrong CA, a TLS client at a
plain port) at its INFO level, in its own raw words, on stderr; the commands say what
went wrong and what to pass instead. The core reads its verbosity once, when grpc is
first imported, so it is set here, before this package imports anything that imports
grpc; ``GRPC_VERBOSITY=INFO corolla ...`` shows gRPC's own log again.
"""

import os

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from ._main import main  # after the verbosity, which grpc reads as it is imported

__all__ = ["main"]
