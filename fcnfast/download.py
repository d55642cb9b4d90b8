"""Downloading one file over HTTP(S): resumable, checked, written atomically, with a progress bar.

    download(url, Path("cache/fcn8s-heavy-pascal.caffemodel"), md5="c03b...")

The bytes go to ``<dest>.part``. A ``.part`` left by an interrupted download is continued with an
HTTP Range request (a server that ignores Range sends the whole file, which then replaces the
part). When the transfer ends, the file is checked against the md5 and sha1 given, and only a
file that passes is renamed to ``dest`` (one ``os.replace``: ``dest`` is either absent or whole).
A file already at ``dest`` that passes the checks is not downloaded again. Standard library only.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Dict, Optional

__all__ = ["DownloadError", "download", "file_digests", "PART_SUFFIX"]

PART_SUFFIX = ".part"
_CHUNK = 1 << 20
_USER_AGENT = "fcnfast-weights"


class DownloadError(Exception):
    """A download that failed or delivered the wrong bytes; the message says which and why."""


def file_digests(path: Path, algorithms=("md5", "sha1")) -> Dict[str, str]:
    """Hex digests of the file at ``path``, read in chunks."""
    hashes = {name: hashlib.new(name) for name in algorithms}
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            for h in hashes.values():
                h.update(chunk)
    return {name: h.hexdigest() for name, h in hashes.items()}


def _mismatch(path: Path, expected: Dict[str, str]) -> Optional[str]:
    """None when ``path`` has the ``expected`` digests; else what differs."""
    if not expected:
        return None
    got = file_digests(path, tuple(expected))
    bad = [f"{name} {got[name]} (published {want})" for name, want in expected.items() if got[name] != want.lower()]
    return "; ".join(bad) or None


def _open(url: str, start: int, timeout: float):
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    if start:
        request.add_header("Range", f"bytes={start}-")
    return urllib.request.urlopen(request, timeout=timeout)


def _transfer(url: str, part: Path, timeout: float, progress: bool, expect_html: bool) -> None:
    start = part.stat().st_size if part.is_file() else 0
    try:
        response = _open(url, start, timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:  # the part already holds every byte
            return
        raise DownloadError(f"{url} answered HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"cannot reach {url}: {reason}") from None
    with response:
        kind = response.headers.get("Content-Type", "")
        if "text/html" in kind and not expect_html:
            raise DownloadError(f"{url} answered with a web page ({kind}), not the file (a sign-in or "
                                f"confirmation page, as Google Drive shows for large files)")
        resumed = start and response.status == 206
        length = response.headers.get("Content-Length")
        total = (int(length) + (start if resumed else 0)) if length is not None else None
        from tqdm import tqdm

        bar = tqdm(total=total, initial=start if resumed else 0, unit="B", unit_scale=True, unit_divisor=1024,
                   desc=part.name[: -len(PART_SUFFIX)], disable=not progress, file=sys.stderr, dynamic_ncols=True)
        try:
            with open(part, "ab" if resumed else "wb") as f:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    f.write(chunk)
                    bar.update(len(chunk))
                f.flush()
                os.fsync(f.fileno())
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            raise DownloadError(f"the download of {url} broke off after {part.stat().st_size} bytes ({exc}); "
                                f"run again to resume it") from None
        finally:
            bar.close()
    if total is not None and part.stat().st_size != total:
        raise DownloadError(f"the download of {url} ended after {part.stat().st_size} of {total} bytes; "
                            f"run again to resume it")


def download(url: str, dest: Path, *, md5: Optional[str] = None, sha1: Optional[str] = None,
             progress: bool = True, timeout: float = 60.0, expect_html: bool = False) -> Path:
    """Download ``url`` to ``dest`` (see the module docstring) and return ``dest``.

    Raises :class:`DownloadError` when the host cannot be reached, answers an HTTP error or a web
    page, the transfer breaks off (the ``.part`` stays, to resume), or the file's checksums differ
    from ``md5`` / ``sha1`` (the ``.part`` is deleted: a resumed download would keep its bytes).
    """
    dest = Path(dest)
    expected = {name: value for name, value in (("md5", md5), ("sha1", sha1)) if value}
    if dest.is_file() and _mismatch(dest, expected) is None:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + PART_SUFFIX)
    _transfer(url, part, timeout, progress, expect_html)
    wrong = _mismatch(part, expected)
    if wrong:
        part.unlink()
        raise DownloadError(f"{url} delivered a file whose checksum differs: {wrong}")
    os.replace(part, dest)
    return dest
