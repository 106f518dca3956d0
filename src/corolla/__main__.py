"""``python -m corolla``: the command line."""

import sys

from corolla.cli import main

if __name__ == "__main__":
    sys.exit(main())
