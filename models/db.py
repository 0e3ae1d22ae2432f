"""The database engine and short, explicit sessions.

The URL and pool size come from ``models.settings`` when the engine is first
needed, never at import time. The schema is the business of ``models.migrate``,
which a command runs; nothing here creates tables.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, create_engine

from models import settings

_engine: Engine | None = None
_engine_url: str | None = None
_lock = threading.Lock()
# Seconds a thread waits for a pooled connection, on either database, rather than failing:
# hundreds of step threads share a few connections, and their sessions are short.
POOL_WAIT_SECONDS = 60


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
    url = settings.database_url()
    engine = _engine
    if engine is not None and _engine_url == url:
        return engine  # hundreds of worker threads open sessions at once: no lock for them
    with _lock:
        if _engine is None or _engine_url != url:
            if url.startswith("sqlite"):
                # SQLite writes one transaction at a time. A few connections per process,
                # and no overflow: hundreds of step threads then wait for a connection in
                # the pool's queue, in order, rather than for SQLite's write lock in its
                # busy handler, which sleeps 1, 2, 5, 10 ms and longer between tries (the
                # default 5 + 10 took a 1024-source start 0.6 s longer, see README).
                engine = create_engine(
                    url, connect_args={"check_same_thread": False, "timeout": 30},
                    pool_size=settings.SQLITE_POOL_SIZE.get(), max_overflow=0,
                    pool_timeout=POOL_WAIT_SECONDS,
                )
                event.listen(engine, "connect", _sqlite_pragmas)
            else:
                # A few connections per process: the server's max_connections (100 by
                # default) is for every process of every host.
                size = settings.DB_POOL_SIZE.get()
                engine = create_engine(
                    url, pool_size=size, max_overflow=2 * size, pool_timeout=POOL_WAIT_SECONDS,
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


class DriverTransaction:
    """A pooled connection inside ``transaction()``: its dialect, and the pool's connection
    (``connection.dbapi_connection`` is the driver's, as on SQLAlchemy's ``Connection``),
    which is what ``models.prepared`` statements run on."""

    __slots__ = ("dialect", "connection")

    def __init__(self, dialect, connection):
        self.dialect, self.connection = dialect, connection


def driver_error(dialect, exc: Exception) -> Exception:
    """A driver's error as SQLAlchemy would raise it (``sqlite3.OperationalError`` becomes
    ``sqlalchemy.exc.OperationalError``), so that the tasks' retry of a briefly locked or
    unreachable database sees it."""
    return DBAPIError.instance(None, None, exc, dialect.loaded_dbapi.Error, dialect=dialect)


@contextmanager
def transaction() -> Iterator[DriverTransaction]:
    """A short transaction on a pooled connection (``with transaction() as c``), for the
    ``models.prepared`` statements that run for every step. Commits on success, rolls back
    on error, and gives the connection back to the pool either way.

    Not SQLAlchemy's ``Connection``: its set-up, events and transaction objects were about
    half of what beginning a step cost (py-spy, N = 64), for statements that run on the
    driver's cursor anyway. The driver begins the transaction at the first write, as under
    SQLAlchemy (which emits no BEGIN for SQLite's or PostgreSQL's driver either)."""
    engine = get_engine()
    pooled = engine.raw_connection()  # the pool's queue, pre-ping and reset, as before
    try:
        yield DriverTransaction(engine.dialect, pooled)
        try:
            pooled.commit()
        except engine.dialect.loaded_dbapi.Error as exc:
            raise driver_error(engine.dialect, exc) from exc
    except BaseException:
        try:
            pooled.rollback()
        except Exception:
            pass  # a lost connection: the pool drops it on return, the first error stands
        raise
    finally:
        pooled.close()
