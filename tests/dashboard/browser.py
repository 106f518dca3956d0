"""What the browser tests share: Debian's Chromium, which Playwright drives (its own
browser download fails here), and the marks that skip a module without it."""

from __future__ import annotations

import shutil

import pytest

#: Debian's Chromium, where it is installed.
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

#: A browser test module's ``pytestmark``.
BROWSER_TEST = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="Debian's Chromium is not installed (`make test` installs it: "
        "sudo apt-get install -y chromium)",
    ),
]
