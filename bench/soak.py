"""Chaos soak: random faults for N seconds against live streams; reports what survived.

    python bench/soak.py --seconds 60          # the CI run
    python bench/soak.py --seconds 3600        # the documented 1-hour run

Faults (a random one every 0.2-1.0 s): proxy cut (FIN), proxy reset (RST), a half-open blackhole
on the live connections, an exchange-side drop with or without close frame 1001, a 503 burst
with a hostile ``Retry-After`` (``²``, ``inf``, ``1e20``, ``NaN``, ``-5``, empty...: ignored),
and an exchange restart. Hostile user code runs all along: a subscriber per stream and a status
listener that call ``sys.exit()``. It prints, and writes as JSON with --json: subscriptions lost,
duplicate deliveries, the longest gap a subscriber saw, reconnects, what the hostile code raised
(caught and counted), the status changes the other listener got all along, and
threads, open file descriptors and RSS at the start and at the end.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import threading
import time
from typing import Any

from wsmanager import WSManager
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


def soak(seconds: float, streams: int, subscribers: int, rate: float, seed: int) -> dict[str, Any]:
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

    with FakeExchange(rate=rate) as exchange, FaultProxy(exchange.port) as proxy:
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
        exchange.wait_until(lambda: exchange.open_connections() == streams, 10)
        began = time.monotonic()
        while time.monotonic() - began < seconds:
            fault = rng.choice(["cut", "reset", "blackhole", "drop", "drop1001", "503", "restart"])
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
        exchange.wait_until(lambda: exchange.open_connections() >= streams, settle)
        time.sleep(1.0)  # one more second of traffic, to see who still receives
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
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)  # faults are the point; keep the report readable
    report = soak(args.seconds, args.streams, args.subscribers, args.rate, args.seed)
    print(json.dumps(report, indent=2))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(report, out, indent=2)
    ok = (
        report["subscriptions_lost"] == 0
        and report["end"]["threads"] <= report["start"]["threads"]
        and report["end"]["fds"] <= report["start"]["fds"]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
