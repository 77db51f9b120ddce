"""Chaos soak: random faults for N seconds against live streams; reports what survived.

    python bench/soak.py --seconds 60          # the CI run
    python bench/soak.py --seconds 3600        # the documented 1-hour run

Faults (a random one every 0.2-1.0 s): proxy cut (FIN), proxy reset (RST), a half-open blackhole
on the live connections, an exchange-side drop with or without close frame 1001, a 503 burst
with a hostile ``Retry-After`` (``²``, ``inf``, ``1e20``, ``NaN``, ``-5``, empty...: ignored),
an exchange restart, and for the user data streams (``--accounts``, through the same proxy)
``eventStreamTerminated`` and ``serverShutdown``. Hostile user code runs all along: a subscriber
per stream and a status listener that call ``sys.exit()``. It prints, and writes as JSON with
--json: subscriptions lost, duplicate deliveries, the longest gap a subscriber saw, reconnects,
what the hostile code raised (caught and counted), the status changes the other listener got all
along, user data accounts lost, events missed and whether each missed event lies in a reported
``Gap`` window, and threads, open file descriptors and RSS at the start and at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import sys
import threading
import time
from typing import Any

from wsmanager import Gap, WSManager
from wsmanager.testing import FakeExchange
from wsmanager.testing.faultproxy import FaultProxy, Mode

HOSTILE_RETRY_AFTER = (  # each must be ignored (a short valid one too): none may end a stream
    "1",
    "\u00b2",  # a superscript two: str.isdigit() says yes, int() says no
    "inf",
    "1e20",
    "NaN",
    "-5",
    "1.5",
    "",
    "0x10",
)


def _exit(*_: object) -> None:
    """Hostile user code: ``sys.exit()`` on a thread the library started."""
    sys.exit(3)


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _snapshot() -> dict[str, int]:
    return {
        "threads": threading.active_count(),
        "fds": len(os.listdir("/proc/self/fd")),
        "rss_kib": _rss_kib(),
    }


class UserDataWatch:
    """The user data side of the soak: accounts, a pusher thread, what arrived, the gaps."""

    def __init__(self, exchange: FakeExchange, accounts: int, rate: float) -> None:
        self.exchange = exchange
        self.keys = [f"SoakAccount{n:03d}" for n in range(accounts)]
        for key in self.keys:
            exchange.add_account(key, secret=f"soak-secret-{key}")
        self.rate = rate
        self.pushed: dict[str, list[tuple[int, int]]] = {key: [] for key in self.keys}  # (i, E)
        self.got: dict[str, list[int]] = {key: [] for key in self.keys}
        self.last: dict[str, float] = {}
        self.gaps: list[Gap] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._push, name="soak-pusher", daemon=True)

    def subscribe(self, manager: WSManager, url: str) -> None:
        manager.on_gap(self._gap)
        for key in self.keys:
            secret = f"soak-secret-{key}"
            manager.user_data(self._receiver(key), api_key=key, api_secret=secret, ws_api_url=url)
            # hostile user code sharing the subscription: SystemExit on every event
            manager.user_data(_exit, api_key=key, api_secret=secret, ws_api_url=url)
        self.thread.start()

    def _gap(self, gap: Gap) -> None:
        if gap.stream == "userData":
            with self.lock:
                self.gaps.append(gap)

    def _receiver(self, key: str) -> Any:
        def on_event(event: dict[str, Any]) -> None:
            with self.lock:
                self.got[key].append(event["i"])
                self.last[key] = time.monotonic()

        return on_event

    def _push(self) -> None:
        number = 0
        while not self.stop.wait(1.0 / self.rate):
            number += 1
            for key in self.keys:
                when = int(time.time() * 1000)
                self.pushed[key].append((number, when))
                event = {"e": "executionReport", "E": when, "i": number}
                with contextlib.suppress(Exception):  # the exchange is restarting
                    self.exchange.push_user_event(key, event)

    def report(self, settle_from: float) -> dict[str, Any]:
        self.stop.set()
        self.thread.join(5)
        with self.lock:
            windows = [(g.expected - 5, g.received + 5) for g in self.gaps]
            missed = unreported = duplicates = 0
            for key in self.keys:
                got = self.got[key]
                duplicates += len(got) - len(set(got))
                received = set(got)
                for number, when in self.pushed[key]:
                    if number in received:
                        continue
                    missed += 1
                    if not any(low <= when <= high for low, high in windows):
                        unreported += 1
            alive = sum(1 for key in self.keys if self.last.get(key, 0.0) > settle_from)
            in_order = all(got == sorted(got) for got in self.got.values())
        return {
            "accounts": len(self.keys),
            "accounts_lost": len(self.keys) - alive,
            "events_pushed": sum(len(p) for p in self.pushed.values()),
            "events_missed": missed,
            "missed_outside_a_gap": unreported,
            "gaps_reported": len(windows),
            "duplicates": duplicates,
            "in_order": in_order,
        }


def soak(
    seconds: float, streams: int, subscribers: int, rate: float, seed: int, accounts: int = 3
) -> dict[str, Any]:
    rng = random.Random(seed)
    start = _snapshot()
    names = [f"s{i}@trade" for i in range(streams)]
    seen: dict[tuple[str, int], set[int]] = {}
    last: dict[tuple[str, int], float] = {}
    gaps: dict[tuple[str, int], float] = {}
    duplicates = 0
    lock = threading.Lock()
    faults: dict[str, int] = {}
    statuses: list[str] = []

    def subscriber(key: tuple[str, int]) -> Any:
        def on_message(message: dict[str, Any]) -> None:
            nonlocal duplicates
            now = time.monotonic()
            with lock:
                ids = seen.setdefault(key, set())
                if message["t"] in ids:
                    duplicates += 1
                ids.add(message["t"])
                if key in last:
                    gaps[key] = max(gaps.get(key, 0.0), now - last[key])
                last[key] = now

        return on_message

    with FakeExchange(rate=rate, ws_api=True) as exchange, FaultProxy(exchange.port) as proxy:
        manager = WSManager(
            url=f"ws://127.0.0.1:{proxy.port}/ws/",
            max_retry_attempts=None,
            base_retry_delay=0.1,
            max_retry_delay=2.0,
            ping_interval=2.0,
            ping_timeout=1.0,
            handshake_timeout=2.0,
        )
        manager.on_connection_status(lambda state: statuses.append(state.value))
        manager.on_connection_status(
            lambda state: None if threading.current_thread() is threading.main_thread() else _exit()
        )
        for name in names:
            for n in range(subscribers):
                manager.subscribe(name, subscriber((name, n)))
            manager.subscribe(name, _exit)  # every message: SystemExit, caught and counted
        user = UserDataWatch(exchange, accounts, rate)
        if accounts:
            user.subscribe(manager, f"ws://127.0.0.1:{proxy.port}/ws-api/v3")
        expected = streams + (1 if accounts else 0)
        exchange.wait_until(lambda: exchange.open_connections() == expected, 10)
        kinds = ["cut", "reset", "blackhole", "drop", "drop1001", "503", "restart"]
        # handovers: serverShutdown, a flood of it, and replacements refused or hanging
        kinds += ["shutdown", "shutdown_flood", "handover_refused", "handover_hangs"]
        if accounts:
            kinds += ["terminate"]
        began = time.monotonic()
        while time.monotonic() - began < seconds:
            fault = rng.choice(kinds)
            faults[fault] = faults.get(fault, 0) + 1
            if fault == "cut":
                proxy.cut()
            elif fault == "reset":
                proxy.reset()
            elif fault == "blackhole":
                proxy.set_mode(Mode.BLACKHOLE, new=False)
            elif fault == "drop":
                exchange.drop(rng.choice(names))
            elif fault == "drop1001":
                exchange.drop(rng.choice(names), code=1001)
            elif fault == "terminate":
                exchange.terminate_user_stream(rng.choice(user.keys))
            elif fault == "shutdown":
                exchange.server_shutdown(enveloped=True, close_after=rng.uniform(0.0, 1.0))
            elif fault == "shutdown_flood":
                for _ in range(20):  # every 50 ms for 1 s: one handover at most
                    exchange.server_shutdown(enveloped=True)
                    time.sleep(0.05)
            elif fault in ("handover_refused", "handover_hangs"):
                if fault == "handover_refused":
                    exchange.reject(503)
                else:
                    exchange.hang_handshakes()
                exchange.server_shutdown(enveloped=True)
                time.sleep(rng.uniform(0.2, 1.5))  # the replacement fails meanwhile
                if rng.random() < 0.5:
                    exchange.drop(rng.choice(names))  # and the old connection goes too
                exchange.accept_normally()
            elif fault == "503":
                hostile = rng.choice(HOSTILE_RETRY_AFTER)
                exchange.reject(503, headers={"Retry-After": hostile})
                time.sleep(rng.uniform(0.2, 1.0))  # the burst lasts this long
                exchange.accept_normally()
            else:
                exchange.stop_listening()
                time.sleep(rng.uniform(0.2, 1.0))  # the exchange is down this long
                exchange.start_listening()
            time.sleep(rng.uniform(0.2, 1.0))  # pacing between faults
        settle_from = time.monotonic()
        settle = 2.0 + 2 * 1.0 + 2.0 + 1.0  # ping bound + max delay + Retry-After
        exchange.wait_until(lambda: exchange.open_connections() >= expected, settle)
        time.sleep(1.0)  # one more second of traffic, to see who still receives
        user_data = user.report(settle_from)
        with lock:
            alive = sum(1 for t in last.values() if t > settle_from)
            lost = streams * subscribers - alive
        metrics = manager.get_metrics()
        status_changes = len(statuses)
        manager.destroy()
    time.sleep(0.5)  # let the interpreter release what the closed sockets held
    end = _snapshot()
    return {
        "seconds": seconds,
        "streams": streams,
        "subscribers": streams * subscribers,
        "faults": faults,
        "subscriptions_lost": lost,
        "duplicates": duplicates,
        "max_gap_seconds": round(max(gaps.values(), default=0.0), 3),
        "reconnect_attempts": metrics.retry_count,
        "messages_received": metrics.messages_received,
        "user_data": user_data,
        "callback_errors": metrics.callback_errors,
        "status_changes_delivered": status_changes,
        "start": start,
        "end": end,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--streams", type=int, default=10)
    parser.add_argument("--subscribers", type=int, default=3, help="per stream")
    parser.add_argument("--rate", type=float, default=20.0, help="messages/s per stream")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--accounts", type=int, default=3, help="user data accounts (0: none)")
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)  # faults are the point; keep the report readable
    report = soak(args.seconds, args.streams, args.subscribers, args.rate, args.seed, args.accounts)
    print(json.dumps(report, indent=2))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(report, out, indent=2)
    user = report["user_data"]
    ok = (
        report["subscriptions_lost"] == 0
        and user["accounts_lost"] == 0
        and user["missed_outside_a_gap"] == 0
        and user["duplicates"] == 0
        and user["in_order"]
        and report["end"]["threads"] <= report["start"]["threads"]
        and report["end"]["fds"] <= report["start"]["fds"]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
