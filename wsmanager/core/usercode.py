"""One policy for code we do not control, in every thread the library starts.

Callbacks, status listeners, ``on_update``, relay consumers — and the parsing of what a server
sends — can raise anything: ``ValueError``, ``RecursionError`` on a deeply nested document,
``SystemExit`` from a ``sys.exit()``, ``KeyboardInterrupt``. A thread of ours that lets one of
them through dies without a word, and every stream it serves goes silent. So every such call goes
through :func:`call_user` (or, on a hot path that keeps its own ``try``, hands what it caught to
:func:`user_code_raised`): the exception is caught, logged with the stream (or listener, book…)
it belongs to, counted by the caller's counter, and the thread goes on.

On the interpreter's main thread — user code the library runs on the caller's own thread, such
as a status listener's first call — ``SystemExit`` and ``KeyboardInterrupt`` are the user's own
intent (Ctrl-C, ``sys.exit()`` in their program), so they pass through there.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable

from ._locks import make_lock

__all__ = ["ErrorCounter", "call_user", "user_code_raised"]

log = logging.getLogger("wsmanager")


class ErrorCounter:
    """How many times user code raised; safe to count from several threads."""

    __slots__ = ("_lock", "count")

    def __init__(self) -> None:
        self._lock = make_lock("user-errors")  # guards count (a leaf: nothing is called under it)
        self.count = 0

    def add(self) -> None:
        with self._lock:
            self.count += 1


def user_code_raised(
    error: BaseException,
    where: str,
    what: str,
    *,
    logger: logging.Logger = log,
    counter: ErrorCounter | None = None,
) -> None:
    """Report ``error``, raised by ``what`` (e.g. "a callback") for ``where`` (e.g. "stream
    btcusdt@trade"): logged with its traceback, counted; re-raised only where it is the user's
    own intent (see the module docstring)."""
    if isinstance(error, (SystemExit, KeyboardInterrupt)) and (
        threading.current_thread() is threading.main_thread()
    ):
        raise error
    if counter is not None:
        counter.add()
    with contextlib.suppress(BaseException):  # a broken log handler is never fatal
        logger.error("%s: %s raised %s", where, what, _describe(error), exc_info=error)


def call_user(
    function: Callable[..., object],
    *args: object,
    where: str,
    what: str,
    logger: logging.Logger = log,
    counter: ErrorCounter | None = None,
) -> bool:
    """Call ``function(*args)``; True when it returned, False when it raised (reported by
    :func:`user_code_raised`: logged, counted with ``counter``)."""
    try:
        function(*args)
    except BaseException as error:  # SystemExit, KeyboardInterrupt, RecursionError included
        user_code_raised(error, where, what, logger=logger, counter=counter)
        return False
    return True


def _describe(error: BaseException) -> str:
    name = type(error).__name__
    if isinstance(error, SystemExit):
        return f"{name}({error.code!r}); the thread goes on"
    return name
