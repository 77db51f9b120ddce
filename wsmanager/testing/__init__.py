"""Test helpers: a fake Binance-style exchange (``FakeExchange``, needs ``websockets``:
``pip install wsmanager[testing]``; ``history=True``: a past, its public archive and REST
history), its rules, and a fault-injecting TCP proxy
(:mod:`wsmanager.testing.faultproxy`, standard library only).

See ``docs/testing.md``.
"""

from __future__ import annotations

from .archive import FakeArchive
from .book import TrueBook
from .exchange import FakeExchange
from .ledger import ConnectionInfo, ControlEntry, RestRequest, StreamStats
from .past import PastSpec
from .replay import Replay, ReplayProgress
from .rules import BINANCE_SPOT_RULES, ExchangeRules, Violation

__all__ = [
    "BINANCE_SPOT_RULES",
    "ConnectionInfo",
    "ControlEntry",
    "ExchangeRules",
    "FakeArchive",
    "FakeExchange",
    "PastSpec",
    "Replay",
    "ReplayProgress",
    "RestRequest",
    "StreamStats",
    "TrueBook",
    "Violation",
]
