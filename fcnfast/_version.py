"""fcnfast's version: declared here only (setup.py reads this file as text; it cannot import fcnfast)."""

__version__ = "0.1.0"
