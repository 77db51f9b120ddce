"""History, then live: Binance's public archive and REST history as the live stream's messages.

``WSManager.subscribe(stream, callback, since=...)`` delivers a stream's history, then the live
stream, without a gap or a duplicate at the seam (:mod:`.seam`); ``WSManager.history`` and
``WSManager.history_frame`` return it as a list or a pandas DataFrame. Modules, one job each:
:mod:`.streams` (which streams, which times, the errors), :mod:`.archive` and :mod:`.rest` (the
sources), :mod:`.convert` (rows as messages), :mod:`.load` (sources stitched), :mod:`.seam`,
:mod:`.frame`, :mod:`.progress`, :mod:`.api`. See ``docs/history.md``.
"""

from __future__ import annotations

from .streams import ArchiveFileError, HistoryError, HistoryOverflowError, parse_since

__all__ = ["ArchiveFileError", "HistoryError", "HistoryOverflowError", "parse_since"]
