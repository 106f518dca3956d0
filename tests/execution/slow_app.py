"""The executor tests' ClientApp, slow to import (a framework that takes its time)."""

from __future__ import annotations

import time

time.sleep(1.5)

from tests.execution.apps import app  # noqa: E402

__all__ = ["app"]
