"""The legacy connection manager, the drop-in shim and the runtime flag between implementations.

``wsmanager.legacy.LegacyConnectionManager`` is the behaviour the new manager replaces (one
connection per subscribe call, a fixed reconnect delay), kept so a rollout can be switched back;
:mod:`wsmanager.legacy.compat` holds ``get_binance_connection`` and ``connection_migration``.
"""

from __future__ import annotations

from .manager import LegacyConnectionManager

__all__ = ["LegacyConnectionManager"]
