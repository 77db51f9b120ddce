"""What the manager offers: :func:`history` (a list), :func:`history_frame` (pandas) and
:func:`subscribe_since` (history, then live), built on a manager's configuration
(``rest_url``, ``archive_url``, ``cache_dir``, ``proxy``, ``max_buffered_messages``)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from ..backoff import BackoffPolicy
from ..config import WSManagerConfig
from ..core._locks import make_lock
from .archive import ArchiveSource
from .frame import frame_from_batches
from .load import HistoryLoader
from .progress import Progress
from .rest import RestSource
from .seam import HistorySeam, Subscribe
from .streams import HistoryStream, check_time_unit, time_bounds

__all__ = [
    "SeamShelf",
    "history",
    "history_frame",
    "iter_history",
    "make_loader",
    "subscribe_since",
]


def make_loader(
    config: WSManagerConfig,
    stream: HistoryStream,
    *,
    stop: threading.Event,
    scale: int = 1,
    progress: Callable[[int], object] | None = None,
) -> HistoryLoader:
    retry = BackoffPolicy(config.base_retry_delay, config.max_retry_delay)
    rest = RestSource(
        config.effective_rest_url,
        stream=stream.name,
        stop=stop,
        proxy=config.proxy,
        retry=retry,
    )
    archive = None
    if config.archive_url is not None:
        archive = ArchiveSource(
            config.archive_url,
            stream,
            stop=stop,
            cache_dir=config.cache_dir,
            proxy=config.proxy,
            retry=retry,
        )
    return HistoryLoader(stream, rest, archive, scale, progress)


def _prepare(
    config: WSManagerConfig, stream: str, since: object, until: object, time_unit: str | None
) -> tuple[HistoryStream, int, int, int]:
    """The stream, ``since``/``until`` in ms, and the scale of the times delivered: ``time_unit``,
    by default the manager's (its ``time_unit`` option), else milliseconds."""
    parsed = HistoryStream.parse(stream)
    start, end = time_bounds(since, until)
    if time_unit is None:
        time_unit = (config.time_unit or "millisecond").lower()
    return parsed, start, end, check_time_unit(time_unit)


def iter_history(
    config: WSManagerConfig,
    stream: str,
    since: object,
    until: object = None,
    progress: bool | None = None,
    time_unit: str | None = None,
    stop: threading.Event | None = None,
) -> Iterator[list[Any]]:
    """:func:`history` in batches, oldest first, so a long load never sits in memory at once.
    ``ValueError``/``TypeError`` for bad arguments are raised here, before any request."""
    parsed, start, end, scale = _prepare(config, stream, since, until, time_unit)
    bar = Progress(stream, start, end, progress)
    loader = make_loader(config, parsed, stop=stop or threading.Event(), scale=scale, progress=bar)

    def batches() -> Iterator[list[Any]]:
        try:
            yield from loader.load(start, end)
        finally:
            loader.close()
            bar.close()

    return batches()


def history(
    config: WSManagerConfig,
    stream: str,
    since: object,
    until: object = None,
    progress: bool | None = None,
    time_unit: str | None = None,
    stop: threading.Event | None = None,
) -> list[Any]:
    """Every message of ``stream`` from ``since`` to ``until`` (exclusive; default now)."""
    messages: list[Any] = []
    for batch in iter_history(config, stream, since, until, progress, time_unit, stop):
        messages += batch
    return messages


def history_frame(
    config: WSManagerConfig,
    stream: str,
    since: object,
    until: object = None,
    progress: bool | None = None,
    time_unit: str | None = None,
    exact: bool = False,
) -> Any:
    """:func:`history` as a pandas DataFrame (:mod:`.frame`)."""
    parsed, start, end, scale = _prepare(config, stream, since, until, time_unit)
    frame_from_batches(parsed, (), scale, exact)  # pandas missing: ImportError before any I/O
    bar = Progress(stream, start, end, progress)
    loader = make_loader(config, parsed, stop=threading.Event(), scale=scale, progress=bar)
    try:
        return frame_from_batches(parsed, loader.load(start, end), scale, exact)
    finally:
        loader.close()
        bar.close()


class SeamShelf:
    """The running history seams of one manager, ended by :meth:`close_all` (destroy)."""

    def __init__(self) -> None:
        self._lock = make_lock("history-seams")  # guards _seams
        self._seams: set[HistorySeam] = set()

    def add(self, seam: HistorySeam) -> None:
        with self._lock:
            self._seams.add(seam)

    def discard(self, seam: HistorySeam) -> None:
        with self._lock:
            self._seams.discard(seam)

    def threads(self) -> list[threading.Thread]:
        with self._lock:
            return [seam.thread for seam in self._seams]

    def close_all(self) -> None:
        with self._lock:
            seams = list(self._seams)
        for seam in seams:
            seam.stop(join=True)


def subscribe_since(
    config: WSManagerConfig,
    shelf: SeamShelf,
    subscribe: Subscribe,
    stream: str,
    callback: Callable[[Any], object],
    on_error: Callable[[Exception], object] | None,
    on_complete: Callable[[], object] | None,
    since: object,
    time_unit: str | None = None,
) -> Callable[[], None]:
    """Subscribe ``stream`` live, deliver its history from ``since``, then the live messages
    (:mod:`.seam`). Returns an idempotent ``unsubscribe()``."""
    parsed, start, _end, scale = _prepare(config, stream, since, None, time_unit)
    stop = threading.Event()
    loader = make_loader(config, parsed, stop=stop, scale=scale)
    seam = HistorySeam(
        parsed,
        start,
        loader,
        callback,
        on_error,
        on_complete,
        limit=config.max_buffered_messages,
        on_end=shelf.discard,
        live_scale=1000 if (config.time_unit or "").lower() == "microsecond" else 1,
    )
    shelf.add(seam)
    try:
        seam.start(subscribe)
    except BaseException:
        shelf.discard(seam)
        loader.close()
        raise

    def unsubscribe() -> None:
        seam.stop(join=True)
        shelf.discard(seam)

    return unsubscribe
