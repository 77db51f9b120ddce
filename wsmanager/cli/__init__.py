"""The ``wsmanager`` command line: every command (stream, demo, view, book, relay, record, ...)."""

from __future__ import annotations

from .main import main

__all__ = ["main"]
