"""Iterating a DataLoader so that its worker processes end with the iteration, however it ends.

A DataLoader's iterator stops its workers when it is exhausted or freed. An error raised while
iterating keeps the iterator alive in the error's traceback, often in a reference cycle that
only the garbage collector breaks, so the workers outlive the failed call. fcnfast's training
workers ignore SIGINT and SIGTERM (the main process decides when a run stops), so a worker left
behind cannot even be terminated: the interpreter then waits for it at exit, forever.
:func:`loader_batches` stops the workers in a ``finally``.
"""

from __future__ import annotations

from typing import Iterable, Iterator

__all__ = ["loader_batches"]


def loader_batches(loader: Iterable) -> Iterator:
    """``loader``'s batches; its workers are stopped when this generator ends: exhausted, left by
    an exception raised through it, or closed (a ``break`` and then garbage, or ``close()``)."""
    iterator = iter(loader)
    try:
        yield from iterator
    finally:
        # A multi-process DataLoader iterator's own shutdown; other iterables have none.
        shutdown = getattr(iterator, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
