"""Settings read from the environment when they are needed, never at import time."""
from __future__ import annotations

import os
from pathlib import Path

from models.db import instance_dir


class NotConfigured(RuntimeError):
    """A setting daqflow needs is missing; the message says which and how to set it."""


def redis_url_file() -> Path:
    """Where ``daqflow up`` leaves the URL of its private Redis for other commands."""
    return instance_dir() / "redis.url"


def redis_url() -> str | None:
    """``REDIS_URL``, else the private Redis of a running ``daqflow up``, else None."""
    url = os.environ.get("REDIS_URL")
    if url:
        return url
    path = redis_url_file()
    return path.read_text().strip() if path.exists() else None


def broker_url() -> str:
    """The Celery broker: ``DAQFLOW_BROKER_URL``, defaulting to the Redis URL."""
    url = os.environ.get("DAQFLOW_BROKER_URL") or redis_url()
    if not url:
        raise NotConfigured("no Redis configured: set REDIS_URL (or DAQFLOW_BROKER_URL), "
                            "or start everything with `daqflow up`")
    return url


def result_backend() -> str:
    """The Celery result backend: ``DAQFLOW_RESULT_BACKEND``, defaulting to the Redis URL."""
    return os.environ.get("DAQFLOW_RESULT_BACKEND") or broker_url()


def float_env(name: str, default: float) -> float:
    """A number from the environment, with a clear error when it is not one."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise NotConfigured(f"{name}={raw!r} is not a number") from None
