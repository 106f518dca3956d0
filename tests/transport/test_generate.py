"""The committed generated code is what ``proto/`` generates today."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from corolla.transport import _generate

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("grpc_tools") is None
    or importlib.util.find_spec("mypy_protobuf") is None,
    reason="needs grpcio-tools and mypy-protobuf (dev extra)",
)


def test_committed_generated_code_is_current() -> None:
    files = _generate.render()

    stale = _generate.stale_files(files)

    assert stale == [], (
        f"generated code is stale: {stale}; run `make proto` "
        "(python -m corolla.transport._generate) and commit the result"
    )


def test_regenerating_into_a_directory_reproduces_the_package(tmp_path: Path) -> None:
    out = tmp_path / "_proto"
    (out).mkdir()
    (out / "gone_pb2.py").write_text("# a module whose .proto was deleted\n")

    code = _generate.main(["--output-dir", str(out)])

    assert code == 0
    assert not (out / "gone_pb2.py").exists()
    assert sorted(p.name for p in out.iterdir()) == sorted(
        p.name for p in _generate.default_output_dir().iterdir() if p.suffix in {".py", ".pyi"}
    )
    assert _generate.main(["--output-dir", str(out), "--check"]) == 0


def test_check_reports_a_changed_file(tmp_path: Path) -> None:
    out = tmp_path / "_proto"
    _generate.write(_generate.render(), out)
    (out / "fleet_pb2.py").write_text("# edited by hand\n")

    result = subprocess.run(
        [sys.executable, "-m", "corolla.transport._generate", "--output-dir", str(out), "--check"],
        capture_output=True,
        text=True,
    )

    assert result.returncode == 1
    assert "stale: fleet_pb2.py" in result.stderr


def test_generated_modules_import_each_other_relatively() -> None:
    for path in _generate.default_output_dir().glob("*.py*"):
        assert "corolla.v1 import" not in path.read_text(), path.name
