"""Every shell command in the README and the guides runs as printed, on this machine.

Each document's fenced ``bash`` blocks (indented ones in lists included) run in order, in
a scratch directory that sees the repository's ``examples/`` and ``.venv/``, as a user
would type them:

- ``corolla link`` and ``corolla node`` start in the background (they run until stopped):
  the next command waits until a link serves its Control API, or until the new node is
  listed there; all of them are stopped once the document is done, and a new
  ``corolla link`` begins a new scenario: the daemons of the one before are stopped first;
- ``/tmp/`` and ``~`` point into the scratch directory, so nothing is left behind;
- a command fails the test if it exits non-zero or runs over :data:`COMMAND_TIMEOUT_S`.

A block that cannot run on one machine (two hosts, a benchmark of minutes, the test suite
itself) says so in an HTML comment on the line right above its fence, with the reason:
``<!-- doc-test: skip: needs a second machine -->``. Placeholders a reader fills in
(``$RUN_ID``) are set for a block by a hidden comment above it, a shell line run before
each of its commands: ``<!-- doc-test: RUN_ID=$(...) -->``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND_TIMEOUT_S = 600.0
READY_TIMEOUT_S = 60.0
SHELLS = {"bash", "sh", "shell", "console"}
DAEMONS = ("corolla link", "corolla node")

_FENCE = re.compile(r"^(?P<indent>\s*)```(?P<info>[\w-]*)\s*$")
_DIRECTIVE = re.compile(r"<!--\s*doc-test:\s*(?P<body>.*?)\s*-->")


@dataclasses.dataclass
class Block:
    """A fenced block of shell commands and what the document says about running it."""

    document: Path
    line: int
    commands: list[str]
    skip: str | None = None
    setup: list[str] = dataclasses.field(default_factory=list)


def _commands(lines: list[str]) -> list[str]:
    """The block's commands: continuation lines joined, comments and blank lines dropped."""
    commands, current = [], ""
    for raw in lines:
        line = raw.rstrip()
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        stripped = _without_comment(current).strip()
        current = ""
        if stripped:
            commands.append(stripped)
    return commands


def _without_comment(command: str) -> str:
    """``command`` without a trailing ``# ...`` (outside quotes)."""
    quote = None
    for index, char in enumerate(command):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or command[index - 1].isspace()):
            return command[:index]
    return command


def blocks(document: Path) -> list[Block]:
    """The shell blocks of a markdown document, with their directives."""
    lines = document.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        fence = _FENCE.match(lines[index])
        if fence is None or fence["info"] not in SHELLS:
            if fence is not None:  # another language's block: skip to its end
                index += 1
                while index < len(lines) and not _FENCE.match(lines[index]):
                    index += 1
            index += 1
            continue
        start = index
        index += 1
        body = []
        while index < len(lines) and not _FENCE.match(lines[index]):
            body.append(lines[index][len(fence["indent"]) :])
            index += 1
        block = Block(document, start + 1, _commands(body))
        above = start - 1
        while above >= 0 and (directive := _DIRECTIVE.search(lines[above])):
            text = directive["body"]
            if text.startswith("skip"):
                block.skip = text.partition(":")[2].strip() or "skipped"
            else:
                block.setup.insert(0, text)
            above -= 1
        found.append(block)
        index += 1
    return found


def _words(command: str) -> list[str]:
    return command.removeprefix(".venv/bin/").split()[:2]


def _is_daemon(command: str) -> bool:
    # ``corolla node keys`` is an action of the command, not the daemon
    rest = command.removeprefix(".venv/bin/").split()[2:]
    return " ".join(_words(command)) in DAEMONS and (not rest or rest[0].startswith("-"))


class Session:
    """A shell session for one document: its scratch directory, environment and daemons."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.home = scratch / "home"
        self.home.mkdir()
        self.tmp = scratch / "tmp"
        self.tmp.mkdir()
        for name in ("examples", ".venv", "Makefile", "pyproject.toml", "src"):
            if (ROOT / name).exists():
                (scratch / name).symlink_to(ROOT / name)
        venv_bin = ROOT / ".venv" / "bin"
        self.env = {
            **os.environ,
            "HOME": str(self.home),
            "COROLLA_HOME": str(self.home / ".corolla"),
            "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
        }
        self.daemons: list[tuple[str, subprocess.Popen[bytes]]] = []

    def _shell(self, command: str, setup: list[str]) -> str:
        lines = ["set -eo pipefail", *setup, command]
        return "\n".join(
            line.replace("/tmp/", f"{self.tmp}/").replace("~/", f"{self.home}/") for line in lines
        )

    def run(self, command: str, setup: list[str]) -> None:
        """Run one command of a block, after the block's hidden setup lines."""
        if _is_daemon(command):
            self._start_daemon(command, setup)
            return
        completed = subprocess.run(
            ["bash", "-c", self._shell(command, setup)],
            cwd=self.scratch,
            env=self.env,
            capture_output=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
        if completed.returncode != 0:
            pytest.fail(
                f"`{command}` exited {completed.returncode}:\n"
                f"{completed.stdout.decode(errors='replace')[-3000:]}\n"
                f"{completed.stderr.decode(errors='replace')[-3000:]}"
            )

    def _start_daemon(self, command: str, setup: list[str]) -> None:
        if _is_link(command):
            self.close()  # a new scenario
            self.daemons.clear()
        log = (self.scratch / f"daemon-{len(self.daemons)}.log").open("wb")
        process = subprocess.Popen(
            ["bash", "-c", self._shell(command, setup)],
            cwd=self.scratch,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.daemons.append((command, process))
        self._wait_ready(command, process)

    def _wait_ready(self, command: str, process: subprocess.Popen[bytes]) -> None:
        from corolla.runtime import ControlClient

        control = _option(command, "--control-address") or "127.0.0.1:9093"
        is_link = _is_link(command)
        nodes_before = None if is_link else self._online_nodes(control)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"`{command}` exited {process.returncode}:\n{self.logs()}")
            with contextlib.suppress(Exception):
                if is_link:
                    with ControlClient(control) as client:
                        client.list_runs()
                    return
                if nodes_before is not None and self._online_nodes(control) > nodes_before:
                    return
            time.sleep(0.2)
        pytest.fail(f"`{command}` was not ready within {READY_TIMEOUT_S:.0f} s:\n{self.logs()}")

    @staticmethod
    def _online_nodes(control: str) -> int:
        from corolla.runtime import ControlClient
        from corolla.transport import control_pb2

        with ControlClient(control) as client:
            return sum(
                node.status == control_pb2.NODE_STATUS_ONLINE for node in client.list_nodes()
            )

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-2000:]}"
            for path in sorted(self.scratch.glob("daemon-*.log"))
        )

    def close(self) -> None:
        for _, process in reversed(self.daemons):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for _, process in self.daemons:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _is_link(command: str) -> bool:
    return _words(command) == ["corolla", "link"]


def _option(command: str, name: str) -> str | None:
    words = shlex.split(command)
    for index, word in enumerate(words):
        if word == name and index + 1 < len(words):
            return words[index + 1]
        if word.startswith(name + "="):
            return word.partition("=")[2]
    return None


@contextlib.contextmanager
def _session(tmp_path: Path) -> Iterator[Session]:
    session = Session(tmp_path)
    try:
        yield session
    finally:
        session.close()


def _documents_with_commands() -> list[Path]:
    return [document for document in DOCUMENTS if any(b.commands for b in blocks(document))]


@pytest.mark.e2e
@pytest.mark.parametrize("document", _documents_with_commands(), ids=lambda p: p.name)
def test_every_command_of_the_document_runs(document: Path, tmp_path: Path) -> None:
    if shutil.which("bash") is None:  # pragma: no cover
        pytest.skip("needs bash")
    ran = 0
    with _session(tmp_path) as session:
        for block in blocks(document):
            if block.skip is not None:
                continue
            for command in block.commands:
                session.run(command, block.setup)
                ran += 1
    assert ran or all(b.skip for b in blocks(document))


def test_a_block_is_read_as_the_commands_a_user_would_type(tmp_path: Path) -> None:
    document = tmp_path / "guide.md"
    document.write_text(
        "Text.\n\n"
        "```bash\n"
        "corolla link --state /tmp/link   # the coordinator\n"
        "corolla run app \\\n"
        "    --run-config 'note=a # b'\n"
        "```\n\n"
        "1. A step:\n\n"
        "   <!-- doc-test: skip: needs a second machine -->\n"
        "   ```bash\n"
        "   corolla node --link link.example.org:9092\n"
        "   ```\n\n"
        "```toml\n[tool]\n```\n"
    )

    first, second = blocks(document)

    assert first.commands == [
        "corolla link --state /tmp/link",
        "corolla run app      --run-config 'note=a # b'",
    ]
    assert first.skip is None
    assert second.commands == ["corolla node --link link.example.org:9092"]
    assert second.skip == "needs a second machine"
    assert _is_daemon(first.commands[0]) and not _is_daemon(first.commands[1])
    assert not _is_daemon("corolla nodes --link 127.0.0.1:9093")
    assert not _is_daemon("corolla node keys --state /tmp/node")
