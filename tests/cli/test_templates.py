"""The ``corolla new`` templates are the quickstart examples with placeholders, kept in sync."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_templates_match_the_examples(tmp_path):
    subprocess.run(
        [sys.executable, str(ROOT / "scripts/sync_templates.py"), "--output", str(tmp_path)],
        check=True,
    )
    committed = ROOT / "src/corolla/cli/templates"

    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.tmpl"))
    current = sorted(p.relative_to(committed) for p in committed.rglob("*.tmpl"))
    assert fresh == current, "run `make templates`"
    stale = [str(p) for p in fresh if not filecmp.cmp(tmp_path / p, committed / p, shallow=False)]
    assert stale == [], "templates are stale: run `make templates`"
