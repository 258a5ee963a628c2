"""Command line: ``python -m facecore <command> ...``; ``python -m facecore --help`` lists them.

Each command lives in its own module with ``add_parser(subparsers)``, which sets ``func``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .errors import FaceCoreError

# Modules that provide a command, in --help order.
COMMAND_MODULES = ["facecore.cli_data", "facecore.augment", "facecore.train", "facecore.blazeface", "facecore.video",
                   "facecore.evaluate", "facecore.identity_compare"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m facecore", description="FaceTrack Studio command line")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except FaceCoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cancelled", file=sys.stderr)
        return 130
    except OSError as exc:  # read-only folder, full disk, name too long... met outside facecore's own checks
        from .io import storage_message

        print(f"error: {storage_message(exc, 'finish ' + args.command)}", file=sys.stderr)
        return 2
    except (RecursionError, MemoryError) as exc:
        print(f"error: {args.command}: the input is too large or too deeply nested ({type(exc).__name__})",
              file=sys.stderr)
        return 2
    except Exception as exc:  # a bug, not bad input: one line for users; FACETRACK_DEBUG=1 shows the traceback
        if os.environ.get("FACETRACK_DEBUG"):
            raise
        print(f"error: {args.command} failed unexpectedly ({type(exc).__name__}: {exc}); "
              "rerun with FACETRACK_DEBUG=1 to see where", file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
