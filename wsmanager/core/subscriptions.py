"""The subscription bookkeeping of one combined connection (pure: no socket, no thread, no lock).

For each stream name a connection is in one of these states::

    wanted ──SUBSCRIBE──> in flight ──{"result": null}──> carried ──UNSUBSCRIBE──> (gone)
                              └──{"error"}──> retried one by one ──{"error"}──> refused

A :class:`SubscriptionBook` records what the exchange carries on the socket (named in the URL,
or subscribed since), what was asked and not yet answered, which streams the exchange refused,
and which streams went silent and are being subscribed again (``stale_after``). It says what to
send next (:meth:`SubscriptionBook.next_request`: unsubscriptions first, then single retries,
then new streams, at most :data:`MAX_PARAMS_PER_REQUEST` names a message) and what an answer
means. The read loop (:mod:`wsmanager.net.readloop`) drives it on the reader thread; tests drive
it with plain values.

Wanted streams come with a *token* (the manager passes each stream's feed): a refusal is kept
for that token only, so a stream subscribed again after a refusal (a new feed) is requested
again instead of waiting forever.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MAX_PARAMS_PER_REQUEST", "Refusal", "Request", "SubscriptionBook"]

MAX_PARAMS_PER_REQUEST = 100  # streams named in one SUBSCRIBE/UNSUBSCRIBE
_request_ids = itertools.count(1)


@dataclass(frozen=True)
class Request:
    """One ``SUBSCRIBE``/``UNSUBSCRIBE`` message sent (or about to be)."""

    id: int
    method: str
    streams: tuple[str, ...]
    sent_at: float
    individual: bool = False  # a retry of one stream after a refused batch

    def message(self) -> dict[str, Any]:
        return {"method": self.method, "params": list(self.streams), "id": self.id}


@dataclass(frozen=True)
class Refusal:
    """The exchange refused ``stream`` for good (after a retry on its own)."""

    stream: str
    code: int | None
    reason: str


@dataclass
class SubscriptionBook:
    """Wanted / in flight / carried / refused for one connection's socket."""

    carried: set[str] = field(default_factory=set)
    since: dict[str, float] = field(default_factory=dict)  # when each became carried
    pending: dict[int, Request] = field(default_factory=dict)
    individual: list[str] = field(default_factory=list)  # to retry one per request
    resubscribing: set[str] = field(default_factory=set)
    refused: dict[str, object] = field(default_factory=dict)  # name -> token refused
    _wanted: dict[str, object] = field(default_factory=dict)
    _work: bool | None = None  # cached has_work(); None: to compute

    # -- inputs ----------------------------------------------------------------------------------

    def opened(self, named: Iterable[str], now: float) -> None:
        """A new socket carries the streams named in its URL, and nothing is in flight."""
        names = list(named)
        self.carried = set(names)
        self.since = dict.fromkeys(names, now)
        self.pending.clear()
        self.individual.clear()
        self.resubscribing.clear()
        self._work = None

    def want(self, wanted: Mapping[str, object]) -> None:
        """The streams the connection should carry now, each with its token."""
        self._wanted = dict(wanted)
        for name, token in list(self.refused.items()):
            if self._wanted.get(name) is not token:
                del self.refused[name]  # gone, or subscribed anew: ask again when wanted
        self._work = None

    def wanted(self) -> set[str]:
        """Names wanted and not refused."""
        refused = self.refused
        return {name for name in self._wanted if name not in refused}

    # -- what to send ----------------------------------------------------------------------------

    def in_flight(self, method: str) -> set[str]:
        return {s for r in self.pending.values() if r.method == method for s in r.streams}

    def _leaving(self, wanted: set[str]) -> set[str]:
        """Carried streams to unsubscribe: not wanted, or stale (to subscribe again after)."""
        carried = self.carried
        return (carried - wanted | carried & self.resubscribing) - self.in_flight("UNSUBSCRIBE")

    def has_work(self) -> bool:
        """Whether a request is due (cached until the next change)."""
        if self._work is None:
            wanted = self.wanted()
            self._work = bool(self.individual) or bool(
                wanted - self.carried - self.in_flight("SUBSCRIBE") or self._leaving(wanted)
            )
        return self._work

    def next_request(self, now: float) -> Request | None:
        """The next message to send (recorded as in flight), or None."""
        wanted = self.wanted()
        request: Request | None = None
        leaving = sorted(self._leaving(wanted))
        if leaving:
            request = self._request("UNSUBSCRIBE", leaving[:MAX_PARAMS_PER_REQUEST], now)
        elif self.individual:
            stream = self.individual.pop(0)
            request = self._request("SUBSCRIBE", [stream], now, individual=True)
        else:
            joining = sorted(wanted - self.carried - self.in_flight("SUBSCRIBE"))
            if joining:
                request = self._request("SUBSCRIBE", joining[:MAX_PARAMS_PER_REQUEST], now)
        return request

    def _request(
        self, method: str, streams: list[str], now: float, *, individual: bool = False
    ) -> Request:
        request = Request(next(_request_ids), method, tuple(streams), now, individual)
        self.pending[request.id] = request
        self._work = None
        return request

    def overdue(self, now: float, timeout: float) -> Request | None:
        """A request unanswered for longer than ``timeout``, if any."""
        for request in self.pending.values():
            if now - request.sent_at > timeout:
                return request
        return None

    # -- the exchange's answers ------------------------------------------------------------------

    def answer(self, request_id: object, error: object, now: float) -> Refusal | None:
        """Apply the exchange's answer to request ``request_id`` (``error``: its ``error``
        member, or None). Returns a :class:`Refusal` when a stream is refused for good.

        Raises ``KeyError`` for an answer to no request we have in flight."""
        request = self.pending.pop(request_id)  # type: ignore[call-overload]
        self._work = None
        if error is None:
            if request.method == "SUBSCRIBE":
                self.carried.update(request.streams)
                self.since.update(dict.fromkeys(request.streams, now))
            else:
                self.carried.difference_update(request.streams)
                self.resubscribing.difference_update(request.streams)
            return None
        if request.method != "SUBSCRIBE":
            self.carried.difference_update(request.streams)  # whatever it says: not carried
            self.resubscribing.difference_update(request.streams)
            return None
        if not request.individual:
            self.individual.extend(s for s in request.streams if s not in self.individual)
            return None
        (stream,) = request.streams
        token = self._wanted.get(stream)
        if token is None:
            return None  # not wanted any more: nobody to tell
        self.refused[stream] = token
        code = error.get("code") if isinstance(error, dict) else None
        reason = str(error.get("msg", error) if isinstance(error, dict) else error)
        return Refusal(stream, code if isinstance(code, int) else None, reason)

    # -- silent streams (stale_after) -----------------------------------------------------------

    def stale(
        self,
        now: float,
        stale_after: float,
        last_message: Callable[[str], float | None],
    ) -> list[str]:
        """Carried streams without a message for ``stale_after`` seconds (``last_message(name)``
        gives the monotonic time of a stream's last message, or None); each is marked to be
        unsubscribed and subscribed again, and returned."""
        found: list[str] = []
        for name in sorted(self.carried):
            if name not in self._wanted or name in self.resubscribing:
                continue
            last = last_message(name)
            since = max(last or 0.0, self.since.get(name, now))
            if now - since < stale_after:
                continue
            found.append(name)
            self.resubscribing.add(name)
            self.since[name] = now
        if found:
            self._work = None
        return found
