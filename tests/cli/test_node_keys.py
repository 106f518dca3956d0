"""``corolla node keys``: the node's public key, as an admin registers it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from corolla.trust import NodeKey, public_key_from_text


def _corolla(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "corolla", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"COROLLA_HOME": str(home), "PATH": "/usr/bin:/bin"},
    )


def test_node_keys_prints_the_key_the_node_keeps(tmp_path: Path) -> None:
    # Act: before the node's first start, and again
    first = _corolla("node", "keys", home=tmp_path)
    second = _corolla("node", "keys", "--state", str(tmp_path / "node"), home=tmp_path)

    # Assert: one key, made once, printed alone on standard output
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    key, made = NodeKey.load_or_create(tmp_path / "node")
    assert not made
    assert first.stdout.strip() == key.public_text
    public_key_from_text(first.stdout)


def test_a_node_without_link_says_what_it_needs(tmp_path: Path) -> None:
    done = _corolla("node", home=tmp_path)

    assert done.returncode == 2
    assert "corolla node needs --link HOST:PORT" in done.stderr
    assert "Traceback" not in done.stderr
