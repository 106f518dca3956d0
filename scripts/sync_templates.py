"""Regenerate the ``corolla new`` templates from the quickstart examples.

The examples are the source of truth; ``src/corolla/cli/templates/<framework>/`` is derived
from them by replacing the example's names with placeholders. ``make templates`` runs this;
``tests/cli/test_templates.py`` fails when the templates are stale.

Usage: python scripts/sync_templates.py [--check] [--output DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = {
    "numpy": "quickstart-numpy",
    "pytorch": "quickstart-pytorch",
    "sklearn": "quickstart-sklearn",
}
FILES = (
    "pyproject.toml",
    "{pkg}/__init__.py",
    "{pkg}/task.py",
    "{pkg}/client_app.py",
    "{pkg}/server_app.py",
)


def render(framework: str) -> dict[str, str]:
    """Template path (relative) -> template text for one framework."""
    name = EXAMPLES[framework]
    package = name.replace("-", "_")
    out = {}
    for pattern in FILES:
        source = ROOT / "examples" / name / pattern.format(pkg=package)
        text = source.read_text(encoding="utf-8")
        text = text.replace(name, "__NAME__").replace(package, "__PACKAGE__")
        out[pattern.format(pkg="__package__") + ".tmpl"] = text
    return out


def write(target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    for framework in EXAMPLES:
        for relative, text in render(framework).items():
            path = target / framework / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=Path, default=ROOT / "src/corolla/cli/templates")
    args = parser.parse_args()
    write(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
