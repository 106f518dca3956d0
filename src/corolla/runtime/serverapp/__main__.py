"""``python -m corolla.runtime.serverapp``: the process of one run's ServerApp."""

import sys

from ._main import main

sys.exit(main())
