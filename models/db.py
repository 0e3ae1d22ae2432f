"""The database engine and short, explicit sessions.

The URL comes from ``DAQFLOW_DATABASE_URL``; the default is an SQLite file in
the instance folder (``DAQFLOW_INSTANCE``, default ``./instance``). Both are
read when the engine is first needed, never at import time.
"""
from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from sqlalchemy import DateTime, event
from sqlalchemy.engine import Engine
from sqlalchemy.types import TypeDecorator
from sqlmodel import Session, create_engine

_engine: Engine | None = None
_engine_url: str | None = None
_lock = threading.Lock()


def instance_dir() -> Path:
    """The folder holding the default database, the demo's files and logs."""
    path = Path(os.environ.get("DAQFLOW_INSTANCE", "instance")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def database_url() -> str:
    """The configured database URL, or the SQLite file in the instance folder."""
    url = os.environ.get("DAQFLOW_DATABASE_URL")
    return url or f"sqlite:///{instance_dir() / 'daqflow.sqlite3'}"


def utcnow() -> datetime:
    """Now, as an aware UTC datetime (every timestamp daqflow stores)."""
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """A timestamp with time zone that always reads back as aware UTC.

    PostgreSQL keeps the zone; SQLite drops it, so values are normalised to UTC
    on the way in and marked UTC on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where a time zone is required")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value, dialect):
        if value is None or value.tzinfo is not None:
            return value
        return value.replace(tzinfo=timezone.utc)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the web process read while worker threads write.
    cursor.execute("PRAGMA journal_mode=WAL")
    # Hundreds of worker threads write step rows: wait for the lock, don't fail.
    cursor.execute("PRAGMA busy_timeout=30000")
    # In WAL mode NORMAL stays consistent through a crash; only a power cut can lose the
    # last commits. FULL would fsync every step's commit while holding the write lock.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def get_engine() -> Engine:
    """The process-wide engine for the configured URL, built on first use."""
    global _engine, _engine_url
    url = database_url()
    with _lock:
        if _engine is None or _engine_url != url:
            if url.startswith("sqlite"):
                engine = create_engine(
                    url, connect_args={"check_same_thread": False, "timeout": 30}
                )
                event.listen(engine, "connect", _sqlite_pragmas)
            else:
                # Hundreds of worker threads share a few connections (sessions are short):
                # the server's max_connections (100 by default) is for every process of
                # every host. A thread waits up to a minute for one rather than failing.
                size = int(os.environ.get("DAQFLOW_DB_POOL_SIZE", "5"))
                engine = create_engine(
                    url, pool_size=size, max_overflow=2 * size, pool_timeout=60,
                    pool_pre_ping=True
                )
            if _engine is not None:
                _engine.dispose()
            _engine, _engine_url = engine, url
        return _engine


def reset_engine() -> None:
    """Forget the engine (tests and forked processes call this)."""
    global _engine, _engine_url
    with _lock:
        if _engine is not None:
            _engine.dispose()
        _engine = _engine_url = None


def create_all() -> None:
    """Make sure the database has daqflow's tables (see ``models.migrate.prepare``)."""
    from models import migrate

    migrate.prepare()


@contextmanager
def session() -> Iterator[Session]:
    """A short session: commits on success, rolls back on error, always closes."""
    with Session(get_engine(), expire_on_commit=False) as s:
        try:
            yield s
            s.commit()
        except BaseException:
            s.rollback()
            raise
