"""Command line: ``python -m facecore <command> ...``; ``python -m facecore --help`` lists them.

One module per command group, each with ``add_parser(subparsers)`` that sets ``func``; the work itself
is in facecore's modules. Defaults come from facecore's config dataclasses (``TrainConfig``,
``VideoConfig``, ``IdentityConfig``; per model ``TrainConfig.for_backbone``), so that the command line
and the pages do the same for the same choice.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from ..errors import FaceCoreError

# Modules that provide commands, in --help order. ``boxstyle`` still lives in facecore.blazeface.builtin.
COMMAND_MODULES = ["facecore.cli.data", "facecore.cli.augment", "facecore.cli.train", "facecore.cli.boxstyle",
                   "facecore.cli.video", "facecore.cli.evaluate", "facecore.cli.identity"]


def parser() -> argparse.ArgumentParser:
    """The whole command line's parser (every command's module imported, none of their work)."""
    p = argparse.ArgumentParser(prog="python -m facecore", description="FaceTrack Studio command line")
    sub = p.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (2: a problem the message explains, 130: Ctrl-C, 70: a bug)."""
    args = parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except FaceCoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cancelled", file=sys.stderr)
        return 130
    except OSError as exc:  # read-only folder, full disk, name too long... met outside facecore's own checks
        from ..io import storage_message

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
