"""Triton kernels of fcnfast (installed as ``fcnfast.kernels``); one file per op."""
