"""Flower App Bundles: built by flwr's own code, verified against .info/CONTENT, unpacked."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from corolla.core import AppLoadError
from corolla.project import AppConfig, ArchiveLimits, load_component, unpack_fab

from .flower_apps import write_flower_project

build = pytest.importorskip("flwr.cli.build", reason="needs flwr (the flower extra)")

# flwr's build reads .gitignore patterns with a pathspec API that pathspec deprecates.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def fab(tmp_path) -> Path:
    """A FAB of a flwr-new-style project, as `flwr build` makes it."""
    data = build.build_fab_from_disk(write_flower_project(tmp_path / "src"))
    path = tmp_path / "alice.myapp.1-0-0.abcdef12.fab"
    path.write_bytes(data)
    return path


def _rewritten(fab: Path, change) -> Path:
    """A copy of ``fab`` whose entries ``change(name, content)`` returns (None drops it)."""
    out = io.BytesIO()
    with zipfile.ZipFile(fab) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dest:
        for name in source.namelist():
            content = change(name, source.read(name))
            if content is not None:
                dest.writestr(name, content)
    path = fab.with_name("changed.fab")
    path.write_bytes(out.getvalue())
    return path


def test_a_fab_unpacks_into_a_directory_named_by_its_hash(fab, tmp_path):
    root = unpack_fab(fab, tmp_path / "fabs")

    assert root.parent == tmp_path / "fabs" and len(root.name) == 64
    assert (root / "myapp" / "client_app.py").is_file()
    assert unpack_fab(fab, tmp_path / "fabs") == root


def test_run_loads_a_fab_as_a_flower_app(fab, tmp_path):
    app = AppConfig.load(fab, fab_dir=tmp_path / "fabs")

    assert app.kind == "flower" and app.name == "myapp"
    assert app.config["num-server-rounds"] == 3
    assert app.federations == {}  # flwr build leaves the federations out
    assert load_component(app.clientapp, app.root) == "flower client app"


def test_a_fab_whose_file_was_altered_is_refused(fab, tmp_path):
    altered = _rewritten(
        fab, lambda name, content: b"app = 'evil'\n" if name.endswith("client_app.py") else content
    )

    with pytest.raises(AppLoadError, match=r"'myapp/client_app.py' does not match the hash"):
        unpack_fab(altered, tmp_path / "fabs")
    assert not (tmp_path / "fabs").exists() or not any((tmp_path / "fabs").iterdir())


def test_a_fab_with_a_file_the_manifest_does_not_list_is_refused(fab, tmp_path):
    extended = _rewritten(fab, lambda name, content: content)
    with zipfile.ZipFile(extended, "a") as archive:
        archive.writestr("myapp/extra.py", "x = 1\n")

    with pytest.raises(AppLoadError, match=r"does not list: \['myapp/extra.py'\]"):
        unpack_fab(extended, tmp_path / "fabs")


def test_a_fab_without_manifest_is_refused(fab, tmp_path):
    stripped = _rewritten(fab, lambda name, c: None if name == ".info/CONTENT" else c)

    with pytest.raises(AppLoadError, match=r"has no .info/CONTENT"):
        unpack_fab(stripped, tmp_path / "fabs")


def test_a_fab_lacking_a_listed_file_is_refused(fab, tmp_path):
    missing = _rewritten(fab, lambda name, c: None if name.endswith("server_app.py") else c)

    with pytest.raises(AppLoadError, match=r"lacks 'myapp/server_app.py'"):
        unpack_fab(missing, tmp_path / "fabs")


def test_a_malformed_manifest_is_refused(fab, tmp_path):
    broken = _rewritten(fab, lambda name, c: b"nonsense" if name == ".info/CONTENT" else c)

    with pytest.raises(AppLoadError, match=r"line 1 is not 'path,sha256,size-in-bits'"):
        unpack_fab(broken, tmp_path / "fabs")


def test_a_corrupt_fab_is_refused(tmp_path):
    path = tmp_path / "broken.fab"
    path.write_bytes(b"PK\x03\x04 not really a zip")

    with pytest.raises(AppLoadError, match=r"the FAB broken.fab is not a zip file"):
        AppConfig.load(path, fab_dir=tmp_path / "fabs")


def test_an_oversized_fab_is_refused_before_it_is_read(fab, tmp_path):
    with pytest.raises(AppLoadError, match="at most 100 are read"):
        unpack_fab(fab, tmp_path / "fabs", ArchiveLimits(max_bytes=100))


def test_a_fab_that_unpacks_beyond_the_limits_is_refused(fab, tmp_path):
    with pytest.raises(AppLoadError, match="holds 5 files; at most 2"):
        unpack_fab(fab, tmp_path / "fabs", ArchiveLimits(max_files=2))


def test_a_fab_entry_that_escapes_is_refused(tmp_path):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("../outside.py", "x = 1\n")
    path = tmp_path / "escape.fab"
    path.write_bytes(out.getvalue())

    with pytest.raises(AppLoadError, match=r"'../outside.py' escapes its directory"):
        unpack_fab(path, tmp_path / "fabs")
    assert not (tmp_path / "outside.py").exists()


def test_a_missing_fab_is_refused(tmp_path):
    with pytest.raises(AppLoadError, match=r"cannot read the FAB nope.fab"):
        unpack_fab(tmp_path / "nope.fab", tmp_path / "fabs")
