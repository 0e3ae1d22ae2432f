"""SQLite connections per process: a few, none more at a peak; a thread beyond them waits
its turn for one instead of failing or meeting SQLite's busy handler."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from models import db


@pytest.fixture
def sqlite_of_two(tmp_path, monkeypatch):
    """A SQLite engine of its own, with DAQFLOW_SQLITE_POOL_SIZE=2; the session's after."""
    monkeypatch.setenv("DAQFLOW_DATABASE_URL", f"sqlite:///{tmp_path / 'pool.db'}")
    monkeypatch.setenv("DAQFLOW_SQLITE_POOL_SIZE", "2")
    db.reset_engine()
    yield db.get_engine()
    db.reset_engine()  # the next test builds the session's engine again


@pytest.mark.database_agnostic  # its own SQLite file, whatever the session's database
def test_a_thread_beyond_the_pool_waits_for_a_connection_given_back(sqlite_of_two):
    first, second = sqlite_of_two.connect(), sqlite_of_two.connect()
    got, answer = threading.Event(), []

    def third_thread():
        with sqlite_of_two.connect() as connection:
            answer.append(connection.execute(text("SELECT 42")).scalar_one())
            got.set()

    waiting = threading.Thread(target=third_thread, daemon=True)
    waiting.start()
    try:
        # Both connections are held: no third one is opened (no overflow).
        assert not got.wait(0.5)
        first.close()  # given back: the waiting thread takes it
        assert got.wait(10), "the waiting thread never got the connection given back"
        assert answer == [42]
    finally:
        first.close()
        second.close()
        waiting.join(10)
