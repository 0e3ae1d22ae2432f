"""The run-control lock: one workflow at a time, across web processes and workers.

A Redis key holding an owner token, set only if absent and with an expiry. The
token is kept on the workflow's row, so the final callback or the failure path
(in whatever process runs it) releases it; a release compares the token first,
so nobody frees a lock they do not own, and a lock left by a dead process expires.
"""
from __future__ import annotations

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


def _client() -> redis.Redis:
    return redis.Redis.from_url(settings.result_backend(), socket_timeout=5,
                                socket_connect_timeout=5)


def acquire(seconds: float, key: str = KEY) -> str:
    """Take the lock (or another one, ``key``) for at most ``seconds``; returns the owner
    token, or raises Busy."""
    token = uuid.uuid4().hex
    client = _client()
    if not client.set(key, token, nx=True, px=max(1000, int(seconds * 1000))):
        raise Busy("another run-control action is in progress; wait for it to end")
    return token


def release(token: str | None, key: str = KEY) -> bool:
    """Release the lock (or ``key``) if ``token`` owns it; True if it did."""
    if not token:
        return False
    try:
        return bool(_client().eval(_RELEASE, 1, key, token))
    except (redis.RedisError, OSError):
        return False  # Redis is away: the lock expires on its own


def holder() -> str | None:
    """The token holding the lock, if any."""
    value = _client().get(KEY)
    return value.decode() if value else None


def clear() -> None:
    """Remove the lock whoever holds it: for ``daqflow unlock`` after checking nothing runs."""
    _client().delete(KEY)
