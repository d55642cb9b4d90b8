"""Import fcnfast's compiled modules once, remembering why one could not be imported."""

from __future__ import annotations

import functools
import importlib
from types import ModuleType
from typing import Optional, Tuple


@functools.lru_cache(maxsize=None)
def load(name: str) -> Tuple[Optional[ModuleType], str]:
    """(module, "") or (None, reason) for ``fcnfast._C`` / ``fcnfast._cuda``."""
    try:
        return importlib.import_module(f"fcnfast.{name}"), ""
    except ModuleNotFoundError as exc:
        if exc.name == f"fcnfast.{name}":
            return None, f"fcnfast.{name} is not built (reinstall with `pip install -e .`; see README)"
        return None, f"importing fcnfast.{name} failed: {exc}"
    except ImportError as exc:  # built but broken: never hide it
        return None, f"fcnfast.{name} is built but failed to import: {exc}"
