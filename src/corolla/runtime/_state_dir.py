"""The directory a link or a node keeps its state in: made ready, or refused clearly."""

from __future__ import annotations

import os
from pathlib import Path

from corolla.core import ConfigError

__all__ = ["prepare_state_dir"]


def prepare_state_dir(path: Path, flag: str = "--state") -> Path:
    """Create ``path`` (and its parents) readable by its owner only, or check the one there
    is a directory this process can write in; return it.

    Raises
    ------
    ConfigError
        If ``path`` is a file, or cannot be created or written to (naming ``flag``, the
        option the user sets it with).
    """
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path} is a file; give a directory (it is created if missing)")
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{flag} {path} cannot be created: {exc.strerror}") from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path} is not writable by this user; give another directory")
    return path
