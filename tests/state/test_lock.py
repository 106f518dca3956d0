"""StateDirectoryLock: one process at a time in a state directory, released however the
holder ends."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from corolla.core import ErrorCode
from corolla.state import StateDirectoryLock, StateInUseError, StorageError

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock and SIGKILL are POSIX")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class Holder:
    """A child process holding the lock of ``directory`` until its stdin closes; it
    prints ``held`` once it holds it, then the pids of the children it started."""

    def __init__(self, directory: Path, *, start_child: bool = False) -> None:
        script = textwrap.dedent(
            f"""
            import subprocess, sys
            from corolla.state import StateDirectoryLock
            lock = StateDirectoryLock({str(directory)!r})
            print("held", flush=True)
            if {start_child!r}:
                # close_fds=False: what keeps the lock from the child is the lock
                # file's own close-on-exec flag.
                child = subprocess.Popen(
                    [sys.executable, "-c", "import time; time.sleep(600)"],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL, close_fds=False,
                )
                print(child.pid, flush=True)
            sys.stdin.read()
            lock.close()
            print("released", flush=True)
            sys.stdin.close()
            """
        )
        self.process = subprocess.Popen(
            [sys.executable, "-c", script],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        assert line == "held", self.process.stderr.read() if self.process.stderr else line
        self.child_pid = int(self.process.stdout.readline()) if start_child else None

    @property
    def pid(self) -> int:
        return self.process.pid

    def release(self) -> str:
        """Close its stdin: it releases the lock and exits; what it printed last."""
        out, _ = self.process.communicate(timeout=60)
        return out.strip()

    def kill(self) -> None:
        self.process.kill()
        self.process.communicate(timeout=60)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.kill()
        if self.child_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.child_pid, signal.SIGKILL)


@pytest.fixture
def holders() -> Iterator[list[Holder]]:
    """Every holder a test starts, stopped whatever the test's outcome."""
    started: list[Holder] = []
    yield started
    for holder in started:
        holder.stop()


def test_a_second_process_is_refused_with_the_directory_and_the_holders_pid(
    tmp_path: Path, holders: list[Holder]
):
    directory = tmp_path / "state"
    holder = Holder(directory)
    holders.append(holder)

    with pytest.raises(StateInUseError) as refused:
        StateDirectoryLock(directory)

    message = str(refused.value)
    assert str(directory) in message
    assert f"(pid {holder.pid})" in message
    assert "\n" not in message
    assert refused.value.code is ErrorCode.CONFLICT
    assert isinstance(refused.value, StorageError)


def test_the_directory_is_free_once_the_holder_closes_its_lock(
    tmp_path: Path, holders: list[Holder]
):
    holder = Holder(tmp_path)
    holders.append(holder)

    assert holder.release() == "released"

    with StateDirectoryLock(tmp_path) as lock:
        assert lock.held


def test_the_directory_is_free_once_the_holder_is_killed(tmp_path: Path, holders: list[Holder]):
    holder = Holder(tmp_path)
    holders.append(holder)

    holder.kill()

    assert holder.process.returncode == -signal.SIGKILL
    with StateDirectoryLock(tmp_path) as lock:
        assert lock.held


def test_a_child_the_holder_started_does_not_keep_the_lock(tmp_path: Path, holders: list[Holder]):
    # A link killed while its ServerApp children still run must be restartable.
    holder = Holder(tmp_path, start_child=True)
    holders.append(holder)

    holder.kill()

    assert holder.child_pid is not None
    os.kill(holder.child_pid, 0)  # still running
    with StateDirectoryLock(tmp_path) as lock:
        assert lock.held


def test_a_second_lock_in_the_same_process_is_refused_until_the_first_is_closed(
    tmp_path: Path,
):
    first = StateDirectoryLock(tmp_path)

    with pytest.raises(StateInUseError, match=f"pid {os.getpid()}"):
        StateDirectoryLock(tmp_path)
    first.close()
    first.close()  # idempotent

    assert not first.held
    with StateDirectoryLock(tmp_path) as second:
        assert second.held
    assert not second.held


def test_a_missing_directory_is_created_readable_by_its_owner_only(tmp_path: Path):
    old = os.umask(0)
    try:
        with StateDirectoryLock(tmp_path / "new") as lock:
            assert _mode(lock.directory) == 0o700
            assert _mode(lock.directory / "lock") == 0o600
    finally:
        os.umask(old)


def test_an_existing_directory_others_may_enter_is_warned_about_and_left_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    directory = tmp_path / "shared"
    directory.mkdir()
    directory.chmod(0o755)

    with caplog.at_level(logging.WARNING, "corolla.state"), StateDirectoryLock(directory):
        pass

    assert _mode(directory) == 0o755
    assert f"{directory} has mode 755" in caplog.text


def test_a_directory_that_cannot_be_created_is_a_storage_error(tmp_path: Path):
    with pytest.raises(StorageError, match="cannot lock the state directory"):
        StateDirectoryLock(tmp_path / "missing" / "parent")
