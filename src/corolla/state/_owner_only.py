"""Files and directories of the state readable by their owner only, whatever the umask.

The state holds what nodes and runs entrust to the link: model updates (from which
training data can be partly reconstructed), run configurations, token hashes. So what
the state creates is ``0600`` (files) or ``0700`` (directories), set explicitly after
creation rather than left to the umask, which may be ``022`` or looser.

What the state finds already there with looser modes (written by an older Corolla, or
under another umask) is tightened when it is opened, with a warning: these are the
state's own files, nobody is meant to share them, and leaving them readable until
someone acts on a warning would leave the model updates exposed meanwhile. A file or
directory owned by another user is left alone (and reported): only its owner or root
may change it, and a process that is neither has no business doing so.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

__all__ = ["DIRECTORY_MODE", "FILE_MODE", "make_directory", "tighten"]

_log = logging.getLogger("corolla.state")

#: Modes of what the state creates: read and written by the owner only.
FILE_MODE = 0o600
DIRECTORY_MODE = 0o700


def make_directory(path: Path) -> bool:
    """Create directory ``path`` (not its parents) with mode 0700; False if it existed.

    Raises
    ------
    OSError
        If it cannot be created (its parent missing included).
    """
    try:
        path.mkdir(mode=DIRECTORY_MODE)
    except FileExistsError:
        if not path.is_dir():
            raise
        return False
    os.chmod(path, DIRECTORY_MODE)  # the umask may have taken bits the owner needs
    return True


def tighten(path: Path, mode: int) -> bool:
    """Take from ``path``'s permissions what ``mode`` does not grant; True if it changed.

    A missing path is left missing. A path owned by someone else, or that cannot be
    changed, is left as it is, with a warning.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        _log.warning("cannot read the permissions of %s: %s", path, exc.strerror)
        return False
    current = stat.S_IMODE(info.st_mode)
    if not current & ~mode:
        return False
    if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
        _log.warning(
            "%s has mode %o and belongs to another user: left as it is; it should be %o",
            path,
            current,
            current & mode,
        )
        return False
    try:
        os.chmod(path, current & mode)
    except OSError as exc:
        _log.warning("cannot make %s readable by its owner only: %s", path, exc.strerror)
        return False
    _log.warning(
        "%s had mode %o: made %o, readable by its owner only", path, current, current & mode
    )
    return True
