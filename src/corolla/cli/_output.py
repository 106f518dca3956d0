"""Where a run's outputs go, and the rule that keeps them from mixing with other files.

``corolla run``, ``corolla attach`` and ``corolla pull`` write :data:`OUTPUT_FILES` into
``--output DIR``. Before a run starts (or a download begins), the directory is checked:

- missing or empty: it is used (created if missing);
- a file: refused;
- holding a file that is not one of :data:`OUTPUT_FILES` (another tool's, or a
  directory): refused, naming that file, with or without ``--force``: the outputs of a run
  are not to be mixed with files they did not write;
- holding only earlier outputs: refused unless ``--force``, which replaces them (files of
  the earlier run that the new one does not write are removed, so the directory
  describes one run).
"""

from __future__ import annotations

from pathlib import Path

from ..core import ConfigError

__all__ = ["OUTPUT_FILES", "check_output", "remove_stale_outputs"]

#: What a run leaves in its output directory (see ``_report.write_outputs``).
OUTPUT_FILES = ("history.json", "final.npz", "metrics.png", "run.json", "report.html")


def check_output(path: Path, *, force: bool) -> None:
    """Refuse ``path`` as an output directory unless it is missing, empty, or holds only
    earlier outputs and ``force`` is set.

    Raises
    ------
    ConfigError
        If ``path`` is a file, holds files other than run outputs, or holds earlier
        outputs without ``force``.
    """
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--output {path} is a file: give a directory (it is created if missing)")
    if not path.is_dir():
        return
    entries = sorted(path.iterdir(), key=lambda entry: entry.name)
    foreign = [entry for entry in entries if entry.name not in OUTPUT_FILES or entry.is_dir()]
    if foreign:
        raise ConfigError(
            f"--output {path} holds {foreign[0].name}, which a run does not write: "
            "give an empty or new directory"
        )
    if entries and not force:
        raise ConfigError(
            f"--output {path} holds the outputs of an earlier run ({entries[0].name}): "
            "pass --force to replace them, or give a new directory"
        )


def remove_stale_outputs(path: Path, written: list[Path]) -> None:
    """Remove the outputs of an earlier run in ``path`` that this one did not write."""
    kept = {p.name for p in written}
    for name in OUTPUT_FILES:
        if name not in kept:
            (path / name).unlink(missing_ok=True)
