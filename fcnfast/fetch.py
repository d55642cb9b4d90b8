"""``fetch_weights(name)``: a known weights file (:mod:`fcnfast.weights_catalog`) into the cache,
checked, and a caffemodel converted on arrival.

    result = fetch_weights("voc-fcn8s")          # .../weights/fcn8s-heavy-pascal.caffemodel + voc-fcn8s.pth
    model = fcnfast.build_model("voc-fcn8s"); fcnfast.load_weights(model, result.checkpoint)

The cache is ``$FCNFAST_CACHE`` or, without it, ``$XDG_CACHE_HOME/fcnfast`` (``~/.cache/fcnfast``);
files go to its ``weights/`` folder. Downloads resume and are written atomically
(:mod:`fcnfast.download`). These hosts have been unreachable for users before: every failure is a
:class:`FetchError` whose message gives the URL to fetch by hand, where to put the file, and the
command to run next.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple, Optional, Union

from .download import DownloadError, download
from .models.caffe_convert import convert_caffemodel
from .models.registry import lookup_model_name
from .weights_catalog import KNOWN_WEIGHTS, KnownWeights, known_weights

__all__ = ["CACHE_ENV", "FetchError", "FetchResult", "cache_dir", "fetch_weights", "resolve_weights"]

#: The environment variable naming the cache folder.
CACHE_ENV = "FCNFAST_CACHE"


class FetchError(Exception):
    """A fetch that failed; the message ends with what to do by hand."""


class FetchResult(NamedTuple):
    """The downloaded file, and the fcnfast checkpoint converted from it (None for a .pth)."""

    entry: KnownWeights
    file: Path
    checkpoint: Optional[Path]


def cache_dir(override: Optional[Union[str, os.PathLike]] = None) -> Path:
    """The weights folder: ``override``, else ``$FCNFAST_CACHE/weights``, else the XDG cache's."""
    if override is not None:
        return Path(override)
    root = os.environ.get(CACHE_ENV) or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fcnfast"
    return Path(root) / "weights"


def resolve_weights(name: str) -> KnownWeights:
    """The catalog entry ``name`` names; a model name in any registry spelling names its caffemodel."""
    if name not in KNOWN_WEIGHTS and lookup_model_name(name) in KNOWN_WEIGHTS:
        name = lookup_model_name(name)
    return known_weights(name)


def converted_path(entry: KnownWeights, folder: Path) -> Path:
    return folder / f"{entry.name}.pth"


def _next_step(entry: KnownWeights, file: Path, folder: Path) -> str:
    if entry.kind == "caffemodel":
        return f"fcnfast convert-caffe {file} --model {entry.model} -o {converted_path(entry, folder)}"
    if entry.model is None:
        return f"fcnfast train --init {file} ..."
    return f"fcnfast evaluate --checkpoint {file} --model {entry.model} ...  (or fcnfast.load_weights(model, '{file}'))"


def fetch_weights(name: str, cache: Optional[Union[str, os.PathLike]] = None, *, progress: bool = True,
                  timeout: float = 60.0, entry: Optional[KnownWeights] = None) -> FetchResult:
    """Download the weights ``name`` (see the module docstring) unless they are cached and pass
    their checksums, and convert a caffemodel to ``<cache>/<name>.pth`` unless done before.
    ``entry`` overrides the catalog's (for mirrors). Raises ValueError for an unknown name and
    :class:`FetchError` (URL, manual steps) when the download, its checks or the conversion fail."""
    entry = entry or resolve_weights(name)
    folder = cache_dir(cache)
    file = folder / entry.filename
    try:
        download(entry.url, file, md5=entry.md5, sha1=entry.sha1, progress=progress, timeout=timeout)
    except DownloadError as exc:
        raise FetchError(
            f"{exc}. Fetch it by hand: download {entry.url} to {file} (for example: curl -L -C - -o {file} "
            f"'{entry.url}')"
            + (f", check its md5 is {entry.md5}" if entry.md5 else "")
            + f", then run: {_next_step(entry, file, folder)}"
        ) from None
    if entry.kind != "caffemodel":
        return FetchResult(entry, file, None)
    checkpoint = converted_path(entry, folder)
    if not checkpoint.is_file() or checkpoint.stat().st_mtime < file.stat().st_mtime:
        try:
            convert_caffemodel(file, entry.model, checkpoint)
        except (ValueError, OSError) as exc:
            raise FetchError(f"downloaded {file}, but converting it failed: {exc}") from None
    return FetchResult(entry, file, checkpoint)
