"""``fcnfast weights``: the known original weights of the FCN networks; ``fcnfast weights fetch NAME``
downloads one into the cache (resumable, checksummed, atomic) and converts a caffemodel on arrival."""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "weights",
        help="list the known original weights, or fetch one (fcnfast weights fetch NAME)",
        description=(
            "Without an action: list the release's caffemodels and pytorch-fcn's converted .pth files with "
            "their URL, size and checksums as published. 'fetch NAME' downloads one into the cache "
            "($FCNFAST_CACHE/weights, else ~/.cache/fcnfast/weights), resuming a partial download, checks "
            "its published checksums, and converts a caffemodel to an fcnfast checkpoint beside it."
        ),
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    fetch = actions.add_parser("fetch", help="download NAME into the cache and convert a caffemodel")
    fetch.add_argument("name", metavar="NAME", help="an entry of 'fcnfast weights' (a model name names its caffemodel)")
    fetch.add_argument("--cache", default=None, metavar="DIR", help="download into DIR instead of the cache")
    fetch.add_argument("--timeout", type=float, default=60.0, metavar="S", help="network timeout in seconds (default 60)")
    fetch.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
    return parser


def _size(size) -> str:
    return "not published" if size is None else f"{size / 2**20:.1f} MiB"


def _list() -> int:
    from fcnfast.fetch import cache_dir
    from fcnfast.weights_catalog import KNOWN_WEIGHTS

    for entry in KNOWN_WEIGHTS.values():
        use = f"model {entry.model}" if entry.model else "VGG16 for train --init"
        print(f"{entry.name}  ({entry.kind}, {use})")
        print(f"    url    {entry.url}")
        print(f"    size   {_size(entry.size)}; md5 {entry.md5 or 'not published'}"
              + (f"; sha1 {entry.sha1}" if entry.sha1 else ""))
        print(f"    from   {entry.source}")
    print(f"cache: {cache_dir()}  (fcnfast weights fetch NAME)")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.action is None:
        return _list()
    from fcnfast.fetch import FetchError, fetch_weights

    try:
        result = fetch_weights(args.name, args.cache, progress=not args.quiet and sys.stderr.isatty(),
                               timeout=args.timeout)
    except (ValueError, FetchError) as exc:
        print(f"fcnfast weights: error: {exc}", file=sys.stderr)
        return 2
    print(f"{result.entry.name}: {result.file}")
    if result.checkpoint is not None:
        print(f"converted for {result.entry.model}: {result.checkpoint}")
    return 0
