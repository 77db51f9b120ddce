"""Streams as ReactiveX observables (the ``rx`` extra: ``pip install 'wsmanager[rx]'``).

The seed's RxJS pipeline, almost word for word::

    from reactivex import operators as ops

    manager.observe("btcusdt@trade").pipe(
        ops.map(lambda t: {"symbol": t["s"], "price": float(t["p"]), "timestamp": t["T"]}),
        ops.filter(lambda t: t["price"] > 50000),
        ops.debounce(0.1),
    ).subscribe(print)

Each subscription to the observable is one subscriber of the shared stream; disposing it
unsubscribes. Values arrive on the stream's dispatch thread.
"""

from __future__ import annotations

from typing import Any

import reactivex
from reactivex import Observable, abc
from reactivex.disposable import Disposable

from .core.delivery import Subscribable

__all__ = ["observe"]


def observe(manager: Subscribable, stream: str) -> Observable[Any]:
    """A cold observable: each ``subscribe`` subscribes to ``stream`` on ``manager``."""

    def on_subscribe(
        observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        unsubscribe = manager.subscribe(
            stream, observer.on_next, on_error=observer.on_error, on_complete=observer.on_completed
        )
        return Disposable(unsubscribe)

    return reactivex.create(on_subscribe)
