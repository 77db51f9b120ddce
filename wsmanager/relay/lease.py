"""Electing one active relay through a Redis lease, and writes fenced by it.

Relays of one group share the key ``<prefix>relay:<group>:lease``. A relay holds the lease when
the key holds its random token; it takes the lease with ``SET key token NX PX ttl`` and keeps
it by renewing (compare-and-``PEXPIRE``) well before ``ttl`` runs out. Every batch of entries is
written by one Lua script that first checks the key still holds the writer's token, so a relay
that lost its lease (paused, cut off, too slow to renew) can never write: Redis itself refuses.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from .entries import Entry

__all__ = ["FencedWriter", "Lease", "LeaseResult", "WriteResult", "lease_key"]

# KEYS[1] lease key; ARGV[1] token, ARGV[2] ttl in ms.
# Returns 2: taken now (it was free), 1: renewed (it was ours), 0: another relay holds it.
_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if holder then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
return 2
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS[1] lease key, KEYS[2..] the streams' keys; ARGV[1] token ("" = not fenced), ARGV[2]
# maxlen, ARGV[3] "<key index> <id> <data length>" per entry, space-separated, ARGV[4] the
# entries' data end to end (a few big arguments cost far less to send than many small ones).
# Returns -1 when the lease is not ours, else {written, refused as already there, then the
# entry number and error of each other failure}.
_WRITE = """
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local written, duplicates, failures = 0, 0, {}
local blob, at, n = ARGV[4], 1, 0
for key, id, size in string.gmatch(ARGV[3], '(%d+) (%S+) (%d+)') do
  n = n + 1
  local stop = at + tonumber(size)
  local reply = redis.pcall('XADD', KEYS[tonumber(key)], 'MAXLEN', '~', ARGV[2], id,
                            'data', string.sub(blob, at, stop - 1))
  at = stop
  if type(reply) == 'table' and reply.err then
    if string.find(reply.err, 'equal or smaller', 1, true) then
      duplicates = duplicates + 1
    else
      failures[#failures + 1] = n
      failures[#failures + 1] = reply.err
    end
  else
    written = written + 1
  end
end
local result = {written, duplicates}
for _, value in ipairs(failures) do result[#result + 1] = value end
return result
"""


def lease_key(group: str, prefix: str) -> str:
    return f"{prefix}relay:{group}:lease"


class LeaseResult(enum.Enum):
    TAKEN = "taken"  # free until now: another relay may have written before
    RENEWED = "renewed"  # ours all along: nobody else wrote meanwhile
    HELD_BY_ANOTHER = "held by another relay"


class Lease:
    """One relay's view of the group's lease; every call is one round trip."""

    def __init__(self, client: redis.Redis, key: str, ttl: float) -> None:
        self.key = key
        self.token = secrets.token_hex(16)
        self.ttl_ms = max(1, round(ttl * 1000))
        self._acquire = client.register_script(_ACQUIRE)
        self._release = client.register_script(_RELEASE)

    def acquire(self) -> LeaseResult:
        """Take the lease if free, renew it if ours."""
        result = int(self._acquire(keys=[self.key], args=[self.token, self.ttl_ms]))
        return {2: LeaseResult.TAKEN, 1: LeaseResult.RENEWED}.get(
            result, LeaseResult.HELD_BY_ANOTHER
        )

    def release(self) -> bool:
        """Give the lease up if ours (a standby takes over at once instead of after ``ttl``)."""
        return bool(self._release(keys=[self.key], args=[self.token]))


@dataclass(frozen=True)
class WriteResult:
    fenced_out: bool  # the lease is not ours: nothing was written
    written: int = 0
    duplicates: int = 0  # refused because an entry with that id or a later one is there
    failures: tuple[tuple[int, str], ...] = ()  # (index in the batch, Redis' error)


class FencedWriter:
    """Writes a batch of entries with one script call, only while the lease is ours."""

    def __init__(self, client: redis.Redis, lease_key: str, token: str, maxlen: int) -> None:
        self._script = client.register_script(_WRITE)
        self._lease_key = lease_key
        self._token = token
        self._maxlen = maxlen

    def write(self, entries: Sequence[Entry]) -> WriteResult:
        keys: list[str] = [self._lease_key]
        numbers: dict[str, int] = {}
        meta: list[str] = []
        for entry in entries:
            number = numbers.get(entry.key)
            if number is None:
                keys.append(entry.key)
                number = numbers[entry.key] = len(keys)
            first, second = entry.id
            meta.append(f"{number} {first}-{second} {len(entry.data)}")
        args: list[Any] = [
            self._token,
            self._maxlen,
            " ".join(meta),
            b"".join(e.data for e in entries),
        ]
        reply = self._script(keys=keys, args=args)
        if reply == -1:
            return WriteResult(fenced_out=True)
        rest = reply[2:]
        failures = tuple((int(rest[i]) - 1, _text(rest[i + 1])) for i in range(0, len(rest) - 1, 2))
        return WriteResult(False, int(reply[0]), int(reply[1]), failures)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
