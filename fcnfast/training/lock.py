"""The run directory's lock: one training run at a time writes a run directory.

Two runs writing one directory would interleave their log rows and replace each other's
checkpoints. A run holds ``RUNDIR/.lock`` while it trains: a JSON file naming its pid, host,
the process's start time (Linux: from /proc, so a recycled pid is not mistaken for the holder)
and when it started. Another run that finds the lock refuses to start, naming the holder. A
lock whose holder is gone (a run killed with SIGKILL, a crash) is stale: the next run on the
same host sees that the pid is dead, or belongs to a newer process, and takes the lock over.
A lock from another host cannot be checked: the message says to delete it if that run is over.

The lock file is created with a hard link of a finished temp file, so nobody ever reads a
half-written lock, and the link is atomic on local filesystems and NFS alike.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Optional

from ..errors import os_error_problem
from .config import TrainingError

__all__ = ["LOCK_NAME", "RunLock"]

LOCK_NAME = ".lock"


def _process_start(pid: int) -> Optional[str]:
    """The start time of process ``pid`` in clock ticks after boot (/proc/PID/stat field 22), or
    None where /proc does not tell (not Linux, no such process)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after its end.
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


def _alive(holder: Dict[str, Any]) -> bool:
    """Whether the process ``holder`` describes (on this host) still runs."""
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    started = holder.get("process_start")
    return started is None or _process_start(pid) in (None, started)


def _describe(holder: Dict[str, Any]) -> str:
    since = holder.get("started")
    return f"pid {holder.get('pid')} on {holder.get('host')}" + (f", since {since}" if since else "")


class RunLock:
    """The lock of run directory ``out`` (which must exist). :meth:`acquire` once, :meth:`release`
    when the run ends (also usable as a context manager); only the holder's release removes it."""

    def __init__(self, out: os.PathLike) -> None:
        self.path = Path(out) / LOCK_NAME
        self.held = False
        self._token = uuid.uuid4().hex
        self.took_over: Optional[Dict[str, Any]] = None  # the stale holder this lock replaced

    def _record(self) -> Dict[str, Any]:
        return {"pid": os.getpid(), "host": socket.gethostname(), "process_start": _process_start(os.getpid()),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "token": self._token}

    def _read(self, path: Path) -> Optional[Dict[str, Any]]:
        try:
            holder = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # unreadable: treated as a lock of unknown holder
        return holder if isinstance(holder, dict) else {}

    def _link(self) -> bool:
        """Create the lock file; False when one exists."""
        fd, tmp = tempfile.mkstemp(prefix=f"{LOCK_NAME}.", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(self._record(), f)
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                return False
            except OSError:  # a filesystem without hard links: exclusive create instead
                try:
                    fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                except FileExistsError:
                    return False
                with os.fdopen(fd, "w") as f:
                    json.dump(self._record(), f)
            return True
        finally:
            with contextlib.suppress(OSError):
                os.remove(tmp)

    def _remove_stale(self, holder: Dict[str, Any]) -> bool:
        """Move the stale lock ``holder`` aside; False when another run replaced it meanwhile."""
        aside = self.path.with_name(f"{LOCK_NAME}.stale.{os.getpid()}")
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:
            return True  # someone else removed it
        moved = self._read(aside)
        if moved != holder:  # a live run's fresh lock: put it back
            with contextlib.suppress(OSError):
                os.link(aside, self.path)
            os.remove(aside)
            return False
        os.remove(aside)
        return True

    def acquire(self) -> "RunLock":
        """Take the lock, or raise TrainingError naming the run that holds it (or why the
        directory cannot be written)."""
        try:
            for _ in range(3):
                if self._link():
                    self.held = True
                    return self
                holder = self._read(self.path)
                if holder is None:
                    continue  # released meanwhile
                if not holder:
                    raise TrainingError(
                        f"run directory {self.path.parent} has a lock file {self.path} that cannot be read; "
                        f"if no run is using the directory, delete it")
                if holder.get("host") != socket.gethostname():
                    raise TrainingError(
                        f"run directory {self.path.parent} is locked by {_describe(holder)} "
                        f"({self.path}); if that run is no longer running, delete {self.path}")
                if _alive(holder):
                    raise TrainingError(
                        f"run directory {self.path.parent} is in use by another fcnfast train "
                        f"({_describe(holder)}); wait for it to finish or choose another --out")
                if self._remove_stale(holder):
                    self.took_over = holder
        except OSError as exc:
            raise TrainingError(f"cannot write to run directory {self.path.parent}: {os_error_problem(exc)}") from exc
        raise TrainingError(f"run directory {self.path.parent}: could not take its lock {self.path}; try again")

    def release(self) -> None:
        """Remove the lock if this object holds it (a no-op otherwise; safe to call twice)."""
        if not self.held:
            return
        self.held = False
        holder = self._read(self.path)
        if holder and holder.get("token") == self._token:
            with contextlib.suppress(OSError):
                os.remove(self.path)

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
