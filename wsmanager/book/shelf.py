"""The order books one manager made: their figures for its metrics, and closing them all."""

from __future__ import annotations

from dataclasses import dataclass

from ..core._locks import make_lock
from .orderbook import BookStats, OrderBook

__all__ = ["BookFigures", "BookShelf"]


@dataclass(frozen=True)
class BookFigures:
    """What a manager's metrics say about its books (closed books' counters included)."""

    books: int
    synced: int
    resyncs: int
    snapshot_requests: int
    errors: int = 0  # what on_update / on_error callbacks raised


class BookShelf:
    """Books in, figures and ``close_all`` out. The lock is never held while a book works."""

    def __init__(self) -> None:
        self._lock = make_lock("books")  # guards _books and the closed books' counters
        self._books: list[OrderBook] = []
        self._closed_resyncs = 0
        self._closed_snapshot_requests = 0
        self._closed_errors = 0

    def add(self, book: OrderBook) -> None:
        with self._lock:
            self._books.append(book)

    def open_books(self) -> list[OrderBook]:
        """The books not closed yet (closed ones are folded into the counters)."""
        with self._lock:
            for book in [b for b in self._books if b.closed]:
                stats = book.stats()
                self._closed_resyncs += stats.resyncs
                self._closed_snapshot_requests += stats.snapshot_requests
                self._closed_errors += stats.callback_errors
                self._books.remove(book)
            return list(self._books)

    def stats(self) -> list[BookStats]:
        return [book.stats() for book in self.open_books()]

    def figures(self) -> BookFigures:
        books = self.open_books()
        stats = [book.stats() for book in books]
        with self._lock:
            resyncs, requests = self._closed_resyncs, self._closed_snapshot_requests
            errors = self._closed_errors
        return BookFigures(
            books=len(stats),
            synced=sum(1 for s in stats if s.synced),
            resyncs=resyncs + sum(s.resyncs for s in stats),
            snapshot_requests=requests + sum(s.snapshot_requests for s in stats),
            errors=errors + sum(s.callback_errors for s in stats),
        )

    def close_all(self) -> None:
        """Close every book (outside the lock: ``close()`` joins a book's worker)."""
        for book in self.open_books():
            book.close()
