"""Triton kernels of fcnfast (installed as ``fcnfast.kernels``); one file per op.

This file does not import Triton: the launchers ask :func:`triton_interpreted` without it.
"""

import os


def triton_interpreted() -> bool:
    """Whether Triton runs kernels under its interpreter on the CPU (``TRITON_INTERPRET`` set, not 0).

    The kernel modules read it once, when they are imported (which decides whether they are
    autotuned); set the variable before importing fcnfast.
    """
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
