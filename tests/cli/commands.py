"""Running ``corolla`` as a user would: a child process of the code under test.

The children get this checkout's ``src`` first on ``PYTHONPATH`` (absolute), so a test
run with ``PYTHONPATH=src`` from the repository root, whose children start in other
directories, still runs this code and not another installed copy of Corolla.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import corolla

SOURCE = Path(corolla.__file__).resolve().parents[1]


def source_environment() -> dict[str, str]:
    """This process's environment with this source first on the path."""
    path = os.pathsep.join(p for p in (str(SOURCE), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}


def environment(home: Path) -> dict[str, str]:
    """The environment of a child: this source first on the path, its own COROLLA_HOME."""
    return {**source_environment(), "COROLLA_HOME": str(home)}


def corolla(
    cwd: Path,
    *args: str,
    timeout: float = 300,
    home: str = "home",
    stdin: str = "",
    token: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``corolla args`` in ``cwd`` to its end, as a user whose ``$COROLLA_HOME`` is
    ``cwd/home`` (one per user), with ``stdin`` as its input and ``$COROLLA_TOKEN`` set
    to ``token`` if given."""
    env = environment(cwd / home)
    if token is not None:
        env["COROLLA_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "corolla", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _default_interrupts() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)


class Background:
    """``corolla`` commands running in the background, always stopped (then killed)."""

    def __init__(self, cwd: Path) -> None:
        self._cwd = cwd
        self.children: list[subprocess.Popen[str]] = []

    def start(self, name: str, *args: str, pipe: bool = False) -> subprocess.Popen[str]:
        """Start ``corolla args``; its output goes to ``name.log``, or to pipes."""
        if pipe:
            out: int = subprocess.PIPE
            err: int = subprocess.PIPE
        else:
            out = os.open(self._cwd / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            err = subprocess.STDOUT
        try:
            child = subprocess.Popen(
                [sys.executable, "-m", "corolla", *args],
                cwd=self._cwd,
                stdout=out,
                stderr=err,
                text=True,
                env=environment(self._cwd / "home"),
                # As from a terminal: Ctrl-C interrupts. A child inherits an ignored SIGINT,
                # and the test process may ignore it for a while (a C ``system()`` running
                # in a thread of some library ignores SIGINT and SIGQUIT meanwhile).
                preexec_fn=_default_interrupts,
            )
        finally:
            if not pipe:
                os.close(out)
        self.children.append(child)
        return child

    def stop_all(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.terminate()
        for child in self.children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(10)


def wait_until(condition: Callable[[], bool], what: str, seconds: float = 60.0) -> None:
    """Poll ``condition`` every 0.1 s, at most ``seconds``; fail the test if it never holds."""
    deadline = time.monotonic() + seconds
    for _ in range(int(seconds / 0.1) + 1):
        if condition():
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {seconds} s")
