"""The run-control lock: one workflow at a time, across web processes and workers.

A Redis key holding an owner token, set only if absent and with an expiry. The
token is kept on the workflow's row, so the final callback or the failure path
(in whatever process runs it) releases it; a release compares the token first,
so nobody frees a lock they do not own, and a lock left by a dead process expires.
"""
from __future__ import annotations

import functools
import uuid

import redis

from models import settings

KEY = "daqflow:run-control-lock"

# Delete the key only if it still holds our token (atomically, in Redis).
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class Busy(Exception):
    """Another run-control action holds the lock."""


def client(timeout: float = 5) -> redis.Redis:
    """A client of the result backend's Redis, with ``timeout`` seconds to connect and to
    answer: one per process (per URL and timeout), shared by its threads."""
    return _client_for(settings.result_backend(), timeout)


@functools.lru_cache(maxsize=8)
def _client_for(url: str, timeout: float) -> redis.Redis:
    # Kept: a client made per call opened a TCP connection to Redis per call (every poll
    # of a long transition asks for the abort flag), and its pool was garbage each time.
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)


def acquire(seconds: float, key: str = KEY) -> str:
    """Take the lock (or another one, ``key``) for at most ``seconds``; returns the owner
    token, or raises Busy."""
    token = uuid.uuid4().hex
    redis_client = client()
    if not redis_client.set(key, token, nx=True, px=max(1000, int(seconds * 1000))):
        raise Busy("another run-control action is in progress; wait for it to end")
    return token


def release(token: str | None, key: str = KEY) -> bool:
    """Release the lock (or ``key``) if ``token`` owns it; True if it did."""
    if not token:
        return False
    try:
        return bool(client().eval(_RELEASE, 1, key, token))
    except (redis.RedisError, OSError):
        return False  # Redis is away: the lock expires on its own


def holder() -> str | None:
    """The token holding the lock, if any."""
    value = client().get(KEY)
    return value.decode() if value else None


def clear() -> None:
    """Remove the lock whoever holds it: for ``daqflow unlock`` after checking nothing runs."""
    client().delete(KEY)
