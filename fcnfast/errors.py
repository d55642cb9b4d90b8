"""The errors fcnfast raises for problems of the user's inputs and machine, not of fcnfast.

:class:`UserError` is the base of every such error (a bad option, a missing or unreadable file,
a run directory in use, a full disk): the CLI prints its message as one line on stderr and
exits with code 2, without a traceback. :func:`os_error_message` words an ``OSError`` the same
way, naming the path and the problem. This module imports nothing from fcnfast.
"""

from __future__ import annotations

import contextlib
import errno
import os
from typing import Iterator, Optional, Union

__all__ = ["NoSpaceLeftError", "UserError", "find_os_error", "os_error_message", "os_error_problem",
           "reporting_full_disk"]


class UserError(Exception):
    """A problem with the user's setup (options, data, checkpoints, output folders, the disk):
    its message names the problem, and the CLI prints it without a traceback."""


class NoSpaceLeftError(UserError, OSError):
    """A write failed because the filesystem of ``directory`` is full (errno ENOSPC).

    Also an ``OSError`` with ``errno == ENOSPC``, so code that handles OSError still does.
    """

    def __init__(self, directory: Union[str, os.PathLike], path: Optional[Union[str, os.PathLike]] = None):
        self.directory = str(directory)
        message = f"no space left on {self.directory}"
        if path is not None:
            message += f" (while writing {os.path.basename(os.fspath(path))}; the previous file, if any, is intact)"
        OSError.__init__(self, errno.ENOSPC, message, None if path is None else os.fspath(path))
        self.message = message

    def __str__(self) -> str:
        return self.message


def find_os_error(exc: BaseException) -> Optional[OSError]:
    """``exc`` itself or the first OSError among its causes and contexts: torch.save, for one,
    turns a failed write into a RuntimeError ("unexpected pos ...") whose context is the OSError."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


@contextlib.contextmanager
def reporting_full_disk(path: Union[str, os.PathLike]) -> Iterator[None]:
    """Re-raise a write of ``path`` that fails for a full disk as :class:`NoSpaceLeftError`
    naming ``path``'s folder, whatever the writer made of the OSError (torch.save: a RuntimeError
    "unexpected pos ..."; a plain file write: an OSError without a file name)."""
    try:
        yield
    except NoSpaceLeftError:
        raise
    except Exception as exc:
        cause = find_os_error(exc)
        if cause is not None and cause.errno == errno.ENOSPC:
            raise NoSpaceLeftError(os.path.dirname(os.path.abspath(os.fspath(path))), path) from exc
        raise


_WORDS = {
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "read-only file system",
    errno.ENOTDIR: "a part of the path is not a folder",
    errno.EISDIR: "is a folder",
    errno.ENOENT: "no such file or folder",
    errno.EEXIST: "already exists",
    errno.EDQUOT: "disk quota exceeded",
}


def os_error_problem(exc: OSError) -> str:
    """What went wrong in ``exc``, in a few words and without the path ("permission denied")."""
    if exc.errno == errno.ENOSPC:
        return "no space left on the device"
    return _WORDS.get(exc.errno) or exc.strerror or str(exc) or type(exc).__name__


def os_error_message(exc: OSError) -> str:
    """One line naming the path and the problem of ``exc``: "no space left on DIR" for ENOSPC,
    "PATH: permission denied", and so on."""
    if isinstance(exc, UserError):
        return str(exc)
    path = exc.filename
    if exc.errno == errno.ENOSPC and path:
        return f"no space left on {os.path.dirname(os.path.abspath(os.fspath(path)))}"
    if path is None:
        return os_error_problem(exc)
    other = f" -> {exc.filename2}" if exc.filename2 else ""
    return f"{path}{other}: {os_error_problem(exc)}"
