"""Import fcnfast's compiled modules once, remembering whether and why one could not be imported."""

from __future__ import annotations

import functools
import importlib
from types import ModuleType
from typing import NamedTuple, Optional, Tuple

from .base import State


class Import(NamedTuple):
    """``module`` when ``state`` is READY (``reason`` empty), else None and why."""

    module: Optional[ModuleType]
    state: State
    reason: str


@functools.lru_cache(maxsize=None)
def probe(name: str) -> Import:
    """The outcome of importing ``fcnfast.<name>`` (``_C`` or ``_cuda``): not built is ABSENT,
    built but failing to import (or missing a dependency) is BROKEN."""
    try:
        return Import(importlib.import_module(f"fcnfast.{name}"), State.READY, "")
    except ModuleNotFoundError as exc:
        if exc.name == f"fcnfast.{name}":
            return Import(None, State.ABSENT,
                          f"fcnfast.{name} is not built (reinstall with `pip install -e .`; see README)")
        return Import(None, State.BROKEN, f"importing fcnfast.{name} failed: {exc}")
    except ImportError as exc:  # built but broken: never hide it
        return Import(None, State.BROKEN, f"fcnfast.{name} is built but failed to import: {exc}")


def load(name: str) -> Tuple[Optional[ModuleType], str]:
    """(module, "") or (None, reason) for ``fcnfast._C`` / ``fcnfast._cuda``."""
    found = probe(name)
    return found.module, found.reason
