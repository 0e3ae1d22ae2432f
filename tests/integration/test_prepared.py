"""Statements run on the driver's cursor (models.prepared) read and write what SQLAlchemy's
own execution does, on the session's database (SQLite, then PostgreSQL)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from uuid import uuid4

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, bindparam
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlmodel import delete, select, update

import models
from models import ECCServer, Workflow
from models.db import transaction
from models.prepared import Prepared

SEEN = datetime(2026, 12, 6, 11, 20, 52, 3085, tzinfo=timezone(timedelta(hours=2)))


@pytest.fixture
def server():
    """A server row of this test's own, gone afterwards."""
    name = f"ecc-prepared-{uuid4().hex[:8]}"
    with models.session() as s:
        s.add(ECCServer(name=name, url="http://127.0.0.1:1/", state=3, transition=0,
                        online=True, last_seen_at=SEEN))
    yield name
    with models.session() as s:
        s.exec(delete(ECCServer).where(ECCServer.name == name))


READ = select(ECCServer.name, ECCServer.state, ECCServer.online.label("up"),
              ECCServer.last_seen_at, ECCServer.last_error, ECCServer.running_seen_at,
              ECCServer.expected_seconds).where(ECCServer.name == bindparam("name"))


def test_a_prepared_select_reads_the_row_as_sqlalchemy_does(server):
    with models.get_engine().connect() as c:
        theirs = c.execute(READ, {"name": server}).first()
    with transaction() as c:
        ours = Prepared(READ).first(c, {"name": server})
        assert Prepared(READ).first(c, {"name": "no such server"}) is None
    assert tuple(ours) == tuple(theirs)
    assert ours.up is True and ours.last_error is None and ours.running_seen_at is None
    # An aware UTC timestamp, as every one daqflow reads, with a type of its own per field.
    assert ours.last_seen_at == SEEN and ours.last_seen_at.utcoffset() == timedelta(0)
    assert [type(value) for value in ours] == [type(value) for value in theirs]


def test_a_prepared_update_writes_what_sqlalchemy_would_and_counts_its_rows(server):
    later = SEEN + timedelta(minutes=5)
    statement = Prepared(update(ECCServer)
                         .where(ECCServer.name == bindparam("name"), ECCServer.state == 3)
                         .values(last_seen_at=bindparam("now"), online=False,
                                 last_error=bindparam("error")))
    with transaction() as c:
        assert statement.run(c, {"name": server, "now": later, "error": "it's <late>"}) == 1
        assert statement.run(c, {"name": "no such server", "now": later, "error": None}) == 0
    with models.session() as s:
        row = s.exec(select(ECCServer).where(ECCServer.name == server)).one()
        assert (row.last_seen_at, row.online, row.last_error) == (later, False, "it's <late>")
        # Stored as SQLAlchemy stores it (on SQLite, the same text): the database compares
        # and orders it with the timestamps written through the ORM.
        row.running_seen_at = later
        s.add(row)
    with models.session() as s:
        assert s.exec(select(ECCServer.last_seen_at == ECCServer.running_seen_at)
                      .where(ECCServer.name == server)).one() is True
        s.exec(update(ECCServer).where(ECCServer.name == server).values(state=4))
    with transaction() as c:  # the literal of its WHERE (state 3) is sent with it
        assert statement.run(c, {"name": server, "now": later, "error": None}) == 0


def test_a_prepared_statement_refuses_a_naive_timestamp_as_the_column_type_does(server):
    statement = Prepared(update(ECCServer).where(ECCServer.name == bindparam("name"))
                         .values(last_seen_at=bindparam("now")))
    with pytest.raises(ValueError, match="naive datetime"):
        with transaction() as c:
            statement.run(c, {"name": server, "now": datetime(2026, 12, 6)})
    with transaction() as c:  # and the transaction it was in is rolled back
        assert Prepared(READ).first(c, {"name": server}).last_seen_at == SEEN


def test_a_prepared_write_is_rolled_back_with_its_transaction(server):
    statement = Prepared(update(ECCServer).where(ECCServer.name == bindparam("name"))
                         .values(last_error=bindparam("error")))
    with pytest.raises(RuntimeError):
        with transaction() as c:
            assert statement.run(c, {"name": server, "error": "half done"}) == 1
            raise RuntimeError("the step failed before its end was recorded")
    with transaction() as c:
        assert Prepared(READ).first(c, {"name": server}).last_error is None


def test_a_prepared_select_reads_every_row_as_sqlalchemy_does(server):
    # Several rows, in order, with NULLs and a timestamp: what a step reads of the topology.
    other = f"{server}-b"
    with models.session() as s:
        s.add(ECCServer(name=other, url="http://127.0.0.1:2/", state=None, online=None))
    every = (select(ECCServer.name, ECCServer.state, ECCServer.online, ECCServer.last_seen_at)
             .where(ECCServer.name.like(f"{server}%")).order_by(ECCServer.name.desc()))
    try:
        with models.get_engine().connect() as c:
            theirs = c.execute(every).all()
        with transaction() as c:
            ours = Prepared(every).all(c)
            assert Prepared(every.where(ECCServer.name == "no such server")).all(c) == []
    finally:
        with models.session() as s:
            s.exec(delete(ECCServer).where(ECCServer.name == other))
    assert [tuple(row) for row in ours] == [tuple(row) for row in theirs]
    assert [row.name for row in ours] == [other, server]
    assert ours[0].state is None and ours[1].last_seen_at == SEEN


def test_a_json_column_reads_as_the_orm_reads_it():
    # What a step reads of its workflow's params: the config each server is sent.
    params = {"configs": {"ecc-cobo0": {"describe": "beam", "prepare": "p"}}, "title": "é\"'"}
    with models.session() as s:
        workflow = Workflow(kind="start_run", params=params)
        s.add(workflow)
        s.flush()
        workflow_id = workflow.id
    statement = Prepared(select(Workflow.params).where(Workflow.id == bindparam("id")))
    try:
        with transaction() as c:
            assert statement.first(c, {"id": workflow_id}).params == params
        with models.session() as s:  # on a session's connection too, as the files steps do
            assert statement.first(s.connection(), {"id": workflow_id}).params == params
    finally:
        with models.session() as s:
            s.exec(delete(Workflow).where(Workflow.id == workflow_id))


def test_a_driver_error_is_raised_as_sqlalchemys_and_rolls_back(server):
    # The tasks retry sqlalchemy.exc.OperationalError (a locked or unreachable database):
    # a statement on the driver's cursor must raise SQLAlchemy's classes, not the driver's.
    gone = Table("no_such_table", MetaData(), Column("x", Integer))
    written = Prepared(update(ECCServer).where(ECCServer.name == bindparam("name"))
                       .values(last_error=bindparam("error")))
    with pytest.raises(DBAPIError) as raised:
        with transaction() as c:
            written.run(c, {"name": server, "error": "written before the error"})
            Prepared(update(gone).values(x=bindparam("x"))).run(c, {"x": 1})
    assert isinstance(raised.value.orig, models.get_engine().dialect.loaded_dbapi.Error)
    if models.get_engine().dialect.name == "sqlite":
        assert isinstance(raised.value, OperationalError)  # "no such table", as SQLAlchemy says
    with transaction() as c:
        assert Prepared(READ).first(c, {"name": server}).last_error is None


def test_a_statement_the_driver_cursor_cannot_run_as_compiled_is_refused_at_first_use():
    # An IN list is rendered anew at each execution by SQLAlchemy: run once as compiled it
    # would send a placeholder the database does not know.
    listed = Prepared(select(ECCServer.name).where(ECCServer.name.in_(["a", "b"])))
    with pytest.raises(ArgumentError, match="IN list"):
        with transaction() as c:
            listed.all(c)
