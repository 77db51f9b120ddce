"""Sequence numbers of Binance streams: ordering, duplicates, gaps and resets (pure).

=============  ==========================  ===========
stream         number(s)                   contiguous
=============  ==========================  ===========
``@trade``     ``t``                       yes
``@aggTrade``  ``a``                       yes
``@depth``     ``U`` (first), ``u`` (last) yes: next ``U`` = last ``u`` + 1
``@depth``     ``pu`` (futures), ``u``     chained: next ``pu`` = last ``u``
``@bookTicker``  ``u``                     no (orders only)
``@bestBidAsk``  ``u``                     no (orders only; SBE)
=============  ==========================  ===========

A message whose number is not past the last one delivered is a duplicate (dropped); where numbers
are contiguous, a number that jumps forward is a gap (reported, and the message delivered). A
futures ``depthUpdate`` carries ``pu``, the ``u`` of the event before it: its ``U`` jumps, and
the event continues the stream when ``pu`` equals the last delivered ``u`` (else a gap, expected
the last ``u``, received ``pu``).

A number more than ``reset_threshold`` *behind* the last one delivered is a **reset**: the
exchange restarted its ids (a testnet reset, a relisting), or one bogus number had jumped far
ahead. It is delivered and reported once (``Jump.reset``), and the stream continues from it, so
no number, however large, can make a stream drop everything after it.
"""

from __future__ import annotations

import enum
from typing import Any, NamedTuple

from ..config import DEFAULT_SEQUENCE_RESET_THRESHOLD

__all__ = ["DUPLICATE", "Jump", "SequenceRule", "Sequencer", "Verdict", "numbers_of", "rule_for"]


class SequenceRule(enum.Enum):
    TRADE = ("t", None, True)
    AGG_TRADE = ("a", None, True)
    DEPTH = ("U", "u", True)
    BOOK_TICKER = ("u", None, False)

    def __init__(self, first: str, last: str | None, contiguous: bool) -> None:
        self.first_key = first
        self.last_key = last or first
        self.contiguous = contiguous


def rule_for(stream: str) -> SequenceRule | None:
    """The sequence rule of ``stream`` (``btcusdt@depth@100ms`` -> DEPTH), or None."""
    if stream.startswith("!") or "@" not in stream:
        return None
    kind = stream.split("@")[1]
    if kind == "trade":
        return SequenceRule.TRADE
    if kind == "aggTrade":
        return SequenceRule.AGG_TRADE
    if kind == "depth":  # diff depth (@depth, @depth@100ms); not partial depth (@depth5...)
        return SequenceRule.DEPTH
    if kind in ("bookTicker", "bestBidAsk"):  # bestBidAsk: SBE's, also culled under load
        return SequenceRule.BOOK_TICKER
    return None


def numbers_of(rule: SequenceRule, payload: Any) -> tuple[int, int] | None:
    """(first, last) number of ``payload`` under ``rule``, or None if it carries none."""
    if not isinstance(payload, dict):
        return None
    first = payload.get(rule.first_key)
    last = payload.get(rule.last_key)
    if type(first) is not int or type(last) is not int or last < first:
        return None
    return first, last


def _chain_of(rule: SequenceRule, payload: Any) -> int | None:
    """A futures depthUpdate's ``pu`` (the ``u`` of the event before it), or None."""
    if rule is not SequenceRule.DEPTH:
        return None
    previous = payload.get("pu")
    return previous if type(previous) is int else None


class Verdict(enum.Enum):
    DUPLICATE = "duplicate"  # not past the last number delivered: dropped


DUPLICATE = Verdict.DUPLICATE


class Jump(NamedTuple):
    """What a delivered message revealed: ``expected`` was due, ``received`` came instead."""

    expected: int
    received: int
    reset: bool = False  # the numbers started again far behind (not a gap: nothing to fetch)


class Sequencer:
    """The last number delivered on one stream, and what a new message means."""

    __slots__ = ("_chained", "_first_key", "_last_key", "last", "reset_threshold", "rule")

    def __init__(
        self,
        rule: SequenceRule,
        last: int | None = None,
        reset_threshold: int = DEFAULT_SEQUENCE_RESET_THRESHOLD,
    ) -> None:
        self.rule = rule
        self.last = last
        self.reset_threshold = reset_threshold
        self._first_key = rule.first_key
        self._last_key = None if rule.last_key == rule.first_key else rule.last_key
        self._chained = rule is SequenceRule.DEPTH  # a futures depthUpdate may carry ``pu``

    def check(self, payload: Any) -> Jump | Verdict | None:
        """What ``payload`` means: None (deliver it), :data:`DUPLICATE` (drop it), or the
        :class:`Jump` it reveals (deliver it and report a gap or a reset).

        Updates ``last`` for a message to deliver. A payload without a number is delivered and
        leaves the sequence as it was. Called once per message: :func:`numbers_of` and the
        ``pu`` chain are read inline here, with no allocation on the way that delivers without a
        report (:meth:`follows`, once per handover, uses those functions).
        """
        if not isinstance(payload, dict):
            return None
        first = payload.get(self._first_key)
        if type(first) is not int:
            return None
        last: Any = first
        if self._last_key is not None:
            last = payload.get(self._last_key)
            if type(last) is not int or last < first:
                return None
        previous = self.last
        if previous is None:
            self.last = last
            return None
        chain = payload.get("pu") if self._chained else None
        if type(chain) is not int:
            chain = None
        if last <= previous:
            if previous - last <= self.reset_threshold:
                return DUPLICATE
            self.last = last
            return Jump(previous if chain is not None else previous + 1, first, True)
        self.last = last
        if chain is not None:
            return None if chain == previous else Jump(previous, chain)
        if first > previous + 1 and self.rule.contiguous:
            return Jump(previous + 1, first)
        return None

    def follows(self, payload: Any) -> bool:
        """True when ``payload`` continues this sequence with nothing missing in between: the
        test a handover uses before it switches a stream to its new connection. Contiguous
        numbers must not jump (a futures event's ``pu`` must not be past the last ``u``); others
        must overlap what was delivered (the old connection has caught up with the first message
        the new one sent)."""
        numbers = numbers_of(self.rule, payload)
        if numbers is None or self.last is None:
            return True
        chain = _chain_of(self.rule, payload)
        if chain is not None:
            return chain <= self.last
        return numbers[0] <= self.last + (1 if self.rule.contiguous else 0)
