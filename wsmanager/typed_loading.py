"""Typed messages on demand: :mod:`wsmanager.typed` needs msgspec (``wsmanager[typed]``), so it
is imported only when a manager or a subscription asks for typed messages."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["require_typed", "typed_decoder"]


def typed_decoder(stream: str, typed: bool) -> Callable[[bytes, bool], Any] | None:
    """The typed decoder of ``stream`` when ``typed`` (None for payloads without a class)."""
    if not isinstance(typed, bool):
        raise TypeError(f"typed must be True, False or None, not {typed!r}")
    if not typed:
        return None
    decoder: Callable[[bytes, bool], Any] | None = require_typed().decoder_for(stream)
    return decoder


def require_typed() -> Any:
    """The :mod:`wsmanager.typed` package, or ImportError naming the extra to install."""
    try:
        typed = importlib.import_module("wsmanager.typed")
    except ImportError as exc:
        raise ImportError("typed messages need msgspec: pip install 'wsmanager[typed]'") from exc
    return typed
