"""How every fcnfast command reports a failure it expects: one line on stderr, exit code 2.

``fcnfast.cli.main`` runs each command through :func:`run_command`, which turns a
:class:`fcnfast.errors.UserError` (training, evaluation, checkpoints, a full disk, the checks of
:mod:`fcnfast.commands._checks`) and an ``OSError`` (an unwritable or missing path) into
``fcnfast COMMAND: error: MESSAGE``. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from fcnfast.errors import UserError, os_error_message

__all__ = ["EXIT_ERROR", "fail", "run_command", "warn"]

#: The exit code of a command that failed for a reason its message names (argparse's too).
EXIT_ERROR = 2


def fail(command: str, message: str) -> int:
    """Print ``fcnfast COMMAND: error: MESSAGE`` on stderr; returns :data:`EXIT_ERROR`."""
    print(f"fcnfast {command}: error: {message}", file=sys.stderr)
    return EXIT_ERROR


def warn(command: str, message: str) -> None:
    """Print ``fcnfast COMMAND: warning: MESSAGE`` on stderr."""
    print(f"fcnfast {command}: warning: {message}", file=sys.stderr)


def run_command(command: str, func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """``func(args)``'s exit code; a UserError or OSError becomes one line and :data:`EXIT_ERROR`."""
    try:
        return int(func(args) or 0)
    except UserError as exc:
        return fail(command, str(exc))
    except OSError as exc:
        return fail(command, os_error_message(exc))
