"""``python -m facecore``: the command line (``facecore.cli``)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
