"""The ``fcnfast`` command line (console script and ``python -m fcnfast``).

Each subcommand lives in ``fcnfast/commands/<name>.py`` with ``register(subparsers)``, which
adds its parser and sets ``func``; modules keep heavy imports inside their ``run``. Every command
runs through :func:`fcnfast.commands._errors.run_command`: an expected failure is one line on
stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

from ._version import __version__
from .commands._errors import run_command

# Subcommand modules in the order ``fcnfast --help`` lists them.
COMMANDS = ("info", "bench", "segment", "train", "evaluate", "export", "make_toy_dataset", "convert_caffe", "weights")


def build_parser() -> argparse.ArgumentParser:

    parser = argparse.ArgumentParser(
        prog="fcnfast", description="Fast, exact FCN semantic segmentation with fused head kernels."
    )
    parser.add_argument("--version", action="version", version=f"fcnfast {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"fcnfast.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"fcnfast.commands.{name}":
                continue  # subcommand not part of this build
            raise
        module.register(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    return run_command(args.command, args.func, args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
