"""One process at a time in a state directory: a lock held for the life of its owner.

A link's ``--state`` directory, and a node's, are each meant for one process. Two links
on one database would hand the same messages out twice and sweep each other's blobs; two
nodes with one identity would take each other's messages. So the owner takes
:class:`StateDirectoryLock` on the directory before it opens anything there, and holds it
until it closes.

The lock is ``flock`` on the file ``DIR/lock``. The kernel releases it when the file is
closed, and closes the file when the process ends, however it ends (SIGKILL, the OOM
killer): a crash leaves no stale lock for anyone to remove by hand. The file itself is
never deleted, since a process could then lock a new file of that name while another
still holds the old one; it holds the pid and host of its holder, which the error a
second taker gets names.

``flock`` locks belong to an open file, not to a process: a second lock on the same
directory from the same process is refused too, and a child forked without ``exec``
shares its parent's lock (the file is opened non-inheritable, so a child started with
``exec`` does not). On NFS, Linux maps ``flock`` to NFS byte-range locks, which hold
across hosts; that is what the host in the error is for.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import stat
import types
from pathlib import Path

from ._errors import StateInUseError, StorageError
from ._owner_only import DIRECTORY_MODE, FILE_MODE, make_directory, tighten

try:
    import fcntl

    _FLOCK = True
except ImportError:  # pragma: no cover - Windows
    _FLOCK = False

__all__ = ["LOCK_FILE", "StateDirectoryLock"]

_log = logging.getLogger("corolla.state")

#: The lock file's name inside a state directory.
LOCK_FILE = "lock"


class StateDirectoryLock:
    """Holds ``directory`` for this process until :meth:`close`; a context manager.

    The directory is created (readable by its owner only) if it is missing. One that
    exists with looser permissions is left as it is, with a warning: the operator chose
    it, and it may hold more than the state (what the state itself keeps there is made
    owner-only when it is opened).

    Parameters
    ----------
    directory
        The state directory. Its parent must exist.

    Raises
    ------
    StateInUseError
        If another process (or another lock of this one) holds the directory; the error
        names the directory and, when the lock file tells, the holder's pid.
    StorageError
        If the directory or its lock file cannot be created, or the platform has no
        ``flock``.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self._directory = Path(directory)
        self._path = self._directory / LOCK_FILE
        if not _FLOCK:  # pragma: no cover - Windows
            raise StorageError("locking a state directory needs fcntl.flock (POSIX)")
        try:
            if not make_directory(self._directory):
                _warn_if_shared(self._directory)
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        except OSError as exc:
            raise StorageError(
                f"cannot lock the state directory {self._directory}: {exc.strerror}"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _holder(fd)
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StorageError(
                    f"cannot lock the state directory {self._directory}: {exc.strerror}"
                ) from exc
            raise StateInUseError(
                f"the state directory {self._directory} is in use by another process"
                f"{holder}: stop it first, or give this one another state directory"
            ) from None
        self._fd: int | None = fd
        tighten(self._path, FILE_MODE)
        # Who holds it, for the error of a second taker; not needed for the lock itself,
        # so a failed write (a full disk) costs only that detail.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)

    @property
    def directory(self) -> Path:
        """The directory held."""
        return self._directory

    @property
    def held(self) -> bool:
        """True until :meth:`close`."""
        return self._fd is not None

    def close(self) -> None:
        """Release the directory. Idempotent."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # no holder to name any more
        os.close(fd)  # releases the lock

    def __enter__(self) -> StateDirectoryLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"StateDirectoryLock({str(self._directory)!r}, held={self.held})"


def _warn_if_shared(directory: Path) -> None:
    """Warn (only) about a state directory others may enter: see :class:`StateDirectoryLock`."""
    try:
        mode = stat.S_IMODE(directory.stat().st_mode)
    except OSError:
        return
    if mode & ~DIRECTORY_MODE:
        _log.warning(
            "the state directory %s has mode %o: other users may list it (what the state "
            "keeps in it is made readable by its owner only); chmod 700 it unless it is "
            "shared on purpose",
            directory,
            mode,
        )


def _holder(fd: int) -> str:
    """`` (pid N)`` or `` (pid N on host H)`` from the lock file, or ``""``."""
    try:
        text = os.pread(fd, 256, 0).decode("utf-8", "replace").split()
    except OSError:
        return ""
    if not text or not text[0].isdigit():
        return ""
    if len(text) > 1 and text[1] != socket.gethostname():
        return f" (pid {text[0]} on host {text[1]})"
    return f" (pid {text[0]})"
