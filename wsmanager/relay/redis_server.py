"""A real ``redis-server`` on loopback for tests, benchmarks and demos (Debian's binary).

::

    with RedisServer() as server:          # a free port, a temporary directory, AOF on
        relay = Relay(server.url, ...)
        server.kill()                      # kill -9, as a crash
        server.start()                     # again, same port, same directory: replays its AOF

It starts no thread; :meth:`close` ends the process and removes the directory. The server ends
with the process that started it, however that one ends: on Linux it is started with a
parent-death signal (``prctl(PR_SET_PDEATHSIG, SIGTERM)``), so even a ``kill -9`` of the parent
ends it. (Linux sends that signal when the *thread* that started the server ends: start it from
a thread that lives as long as you need the server, e.g. the main thread.)
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ..net._closing import ClosesOnExit

__all__ = ["RedisServer", "RedisServerNotFoundError", "ends_with_parent", "find_redis_server"]

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class RedisServerNotFoundError(RuntimeError):
    """``redis-server`` is not installed (Debian: ``apt-get install redis-server``)."""


def find_redis_server() -> str | None:
    """The path of ``redis-server``, or None when it is not installed."""
    return shutil.which("redis-server")


def ends_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` for :class:`subprocess.Popen` that has Linux send ``sig`` to the child
    when its parent ends, however it ends (``kill -9`` included); None elsewhere.

    The child checks, after asking, that its parent is still the one that started it: if the
    parent died in between, the child ends at once."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved here, not in the child
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer(ClosesOnExit):
    """One ``redis-server`` process on 127.0.0.1 with its own directory.

    ``appendfsync="always"`` makes every acknowledged write durable before the reply, so a
    ``kill -9`` loses nothing that a client was told had been written.
    """

    def __init__(
        self,
        port: int = 0,
        *,
        appendonly: bool = True,
        appendfsync: str = "always",
        directory: str | Path | None = None,
        start: bool = True,
    ) -> None:
        binary = find_redis_server()
        if binary is None:
            raise RedisServerNotFoundError(
                "redis-server is not installed (Debian/Ubuntu: apt-get install redis-server)"
            )
        self._binary = binary
        self._own_directory = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="wsmanager-redis-"))
        self.port = port or _free_port()
        self._appendonly = appendonly
        self._appendfsync = appendfsync
        self._process: subprocess.Popen[bytes] | None = None
        if start:
            self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        """Start (again) on the same port and directory; return once it answers PING."""
        if self.running:
            return
        args = [
            self._binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes" if self._appendonly else "no",
            "--appendfsync", self._appendfsync,
            "--daemonize", "no",
            "--loglevel", "warning",
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        self._process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=ends_with_parent(),  # only a prctl runs in the child
        )
        try:
            self._wait_for_ping(timeout)
        except BaseException:  # a signal (SIGTERM -> KeyboardInterrupt) while it starts
            self.kill()
            raise

    def _wait_for_ping(self, timeout: float) -> None:
        assert self._process is not None
        deadline = time.monotonic() + timeout
        while not _answers_ping(self.port):
            if self._process.poll() is not None:
                error = self._process.stderr.read().decode() if self._process.stderr else ""
                log = self.directory / "redis.log"
                if log.exists():
                    error += log.read_text()[-2000:]
                raise RuntimeError(f"redis-server on port {self.port} exited: {error.strip()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server on port {self.port} did not answer in {timeout}s")
            time.sleep(0.01)

    def kill(self) -> None:
        """``kill -9``: no shutdown, no final save; only what is in the AOF survives."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        """A clean shutdown (SIGTERM)."""
        self._end(signal.SIGTERM)

    def _end(self, sig: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, sig)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()

    def close(self) -> None:
        self.kill()
        if self._own_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __repr__(self) -> str:
        return f"<RedisServer {self.url} {'running' if self.running else 'stopped'}>"


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False
