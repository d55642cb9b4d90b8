"""Checkpoint and run files on disk: atomic writes and checked reads.

Every file fcnfast writes into a run directory (checkpoints, ``config.json``, the logs when they
are rewritten) goes through :func:`atomic_write`: a temp file ``.{name}.*.tmp`` in the same
directory, fsync, ``os.replace``. A reader, or a run killed mid-write, sees the old file or the
new one, never a torn one. ``FCNFAST_CHECKPOINT_FSYNC=0`` skips the fsyncs (tests do: a 1 GB
fsync costs seconds); the writes stay atomic, only durability across a power cut is given up.
A write that fails because the disk is full raises :class:`fcnfast.errors.NoSpaceLeftError`
("no space left on DIR") and leaves the old file in place.

Every checkpoint fcnfast reads goes through :func:`read_checkpoint`
(``torch.load(weights_only=True)``), whose errors name the file and what is wrong with it.

This module depends on torch and :mod:`fcnfast.errors` only.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO, Callable, Dict, Iterable, List, Optional

import torch

from .errors import reporting_full_disk

__all__ = [
    "FSYNC_ENV",
    "atomic_write",
    "atomic_write_text",
    "fsync_enabled",
    "read_checkpoint",
    "remove_stale_temp_files",
    "save_checkpoint",
]

#: Environment switch: "0" skips the fsyncs of atomic writes.
FSYNC_ENV = "FCNFAST_CHECKPOINT_FSYNC"


def fsync_enabled() -> bool:
    """False when ``FCNFAST_CHECKPOINT_FSYNC=0``; read at each write, so tests can flip it."""
    return os.environ.get(FSYNC_ENV, "1") != "0"


def _temp_pattern(name: str) -> str:
    # The one place that knows what a temp file of ``name`` looks like (writer and cleaner).
    return f".{name}.*.tmp"


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse directory fsync; the replace is still atomic
    finally:
        os.close(fd)


def atomic_write(path: os.PathLike, write: Callable[[BinaryIO], None], *also: os.PathLike) -> None:
    """Write ``path`` atomically by calling ``write`` on a binary temp file in the same directory.

    ``also``: further paths (same filesystem) that get the same content, as hard links of the
    finished temp file where the filesystem allows (else copies), each replaced atomically.
    On any error every temp file is removed and the old files are left as they were; a full
    disk raises :class:`fcnfast.errors.NoSpaceLeftError` ("no space left on DIR").
    """
    path = Path(path)
    with reporting_full_disk(path):
        _atomic_write(path, write, also)


def _atomic_write(path: Path, write: Callable[[BinaryIO], None], also: Iterable[os.PathLike]) -> None:
    fsync = fsync_enabled()
    directory = str(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    extra_tmps: List[str] = []
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; run files are as readable as any other output
        for other in also:
            other = Path(other)
            other_tmp = str(other.parent / f".{other.name}.{os.getpid()}.link.tmp")
            with contextlib.suppress(FileNotFoundError):
                os.remove(other_tmp)
            try:
                os.link(tmp, other_tmp)
            except OSError:
                shutil.copyfile(tmp, other_tmp)
                if fsync:
                    with open(other_tmp, "rb+") as f:
                        os.fsync(f.fileno())
            extra_tmps.append(other_tmp)
            os.replace(other_tmp, other)
            extra_tmps.pop()
        os.replace(tmp, path)
        if fsync:
            _fsync_dir(directory)
    except BaseException:
        for leftover in [tmp, *extra_tmps]:
            with contextlib.suppress(OSError):
                os.remove(leftover)
        raise


def atomic_write_text(path: os.PathLike, text: str) -> None:
    """:func:`atomic_write` of ``text`` (UTF-8)."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def save_checkpoint(obj: Any, path: os.PathLike, *also: os.PathLike) -> None:
    """``torch.save(obj)`` to ``path`` (and the paths ``also``) with :func:`atomic_write`."""
    atomic_write(path, lambda f: torch.save(obj, f), *also)


def remove_stale_temp_files(directory: os.PathLike, names: Iterable[str]) -> None:
    """Delete temp files that a killed :func:`atomic_write` of ``directory/name`` left behind."""
    for name in names:
        for tmp in glob.glob(str(Path(directory) / _temp_pattern(name))):
            with contextlib.suppress(OSError):
                os.remove(tmp)


# What a file that torch.save did not write most likely is, by its first bytes.
_FILE_KINDS = (
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89PNG", "a PNG image"),
    (b"GIF8", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"\x89HDF", "an HDF5 file (Keras or MATLAB weights?)"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\x93NUMPY", "a numpy .npy array"),
)
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def _not_a_checkpoint(head: bytes) -> Optional[str]:
    """What the file starting with ``head`` is when torch.save cannot have written it, else None.

    torch.save writes a zip archive (since PyTorch 1.6) or, in the legacy format, a pickle
    (protocol 2 or later: ``\\x80`` then the protocol number)."""
    if head.startswith(_ZIP_MAGIC) or (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5):
        return None
    if not head:
        return "empty"
    for magic, kind in _FILE_KINDS:
        if head.startswith(magic):
            return kind
    try:
        head.decode("utf-8")
        return "a text file"
    except UnicodeDecodeError:
        return "in a format fcnfast does not know (a Caffe .caffemodel must be converted first)"


def _load_problem(exc: BaseException) -> str:
    """Why torch.load failed, in a few words and without its advice to load with weights_only=False
    (which the CLI does not offer and which would run the file's code)."""
    text = str(exc)
    blocked = re.search(r"GLOBAL ([\w.]+)", text)
    if blocked:
        return (f"it holds Python objects other than tensors and plain containers ({blocked.group(1)}), "
                f"which fcnfast does not unpickle; save the tensors alone, e.g. torch.save(model.state_dict(), PATH)")
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    text = re.sub(r"^\s*\[enforce fail at [^\]]*\]\s*\.?\s*", "", text.strip())
    first = text.splitlines()[0] if text else type(exc).__name__
    return f"it is truncated or corrupt ({first.split('. ', 1)[0].rstrip('.')})"


def read_checkpoint(path: os.PathLike, *, mmap: bool = True) -> Dict[str, Any]:
    """The dict saved in ``path``, via ``torch.load(map_location="cpu", weights_only=True)``.

    ``mmap`` maps tensors lazily (cheap when only a few entries are needed; legacy non-zip files
    are read whole). Raises FileNotFoundError ("checkpoint not found: PATH") for a missing file
    and ValueError naming the file for one that torch.save did not write ("PATH is not a PyTorch
    checkpoint: it is a JPEG image"), one that is truncated or corrupt, one holding Python
    objects that weights-only loading refuses, and one holding something other than a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    with open(path, "rb") as f:
        kind = _not_a_checkpoint(f.read(8))
    if kind is not None:
        raise ValueError(f"{path} is not a PyTorch checkpoint: it is {kind}")
    try:
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except RuntimeError as exc:
            if not mmap or "mmap" not in str(exc):
                raise
            loaded = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except Exception as exc:
        raise ValueError(f"checkpoint {path} cannot be read: {_load_problem(exc)}") from exc
    if not isinstance(loaded, Mapping):
        raise ValueError(f"checkpoint {path} holds a {type(loaded).__name__}, not a dict")
    return dict(loaded)
