"""Schema migrations: a database made by `daqflow db upgrade` is exactly the models' schema,
on SQLite and on PostgreSQL; a database from before migrations is refused, not used."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text
from sqlmodel import SQLModel

import models.db
from models import migrate
from tests.support import POSTGRES, ROOT

# Each test makes databases of its own, on both engines, whatever the session's database:
# .ci/run's first pass only.
pytestmark = pytest.mark.database_agnostic


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'fresh.sqlite3'}"


@pytest.fixture
def postgres_url():
    """A throw-away database on the PostgreSQL server, dropped afterwards."""
    name = f"daqflow_migrations_{uuid.uuid4().hex[:12]}"
    admin = create_engine(f"{POSTGRES}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield f"{POSTGRES}/{name}"
    models.db.reset_engine()
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def empty_database(request, monkeypatch):
    url = request.getfixturevalue(f"{request.param}_url")
    monkeypatch.setenv("DAQFLOW_DATABASE_URL", url)
    models.db.reset_engine()
    yield url
    models.db.reset_engine()


def test_db_upgrade_builds_exactly_the_models_schema(empty_database):
    env = dict(os.environ, DAQFLOW_DATABASE_URL=empty_database)
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", "db", "upgrade"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"database schema: empty -> {migrate.head()}"

    assert migrate.current() == migrate.head()
    with models.db.get_engine().connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection, opts={
            "compare_type": True}), SQLModel.metadata)
    assert differences == []


def test_an_empty_database_is_created_by_the_migrations_on_first_use(empty_database):
    migrate.prepare()
    assert migrate.current() == migrate.head()
    migrate.prepare()  # at head: nothing to do


def test_a_database_made_before_migrations_is_refused_with_what_to_do(empty_database):
    SQLModel.metadata.create_all(models.db.get_engine())  # as daqflow did before Alembic

    with pytest.raises(migrate.SchemaOutOfDate, match="back it up and delete it"):
        migrate.prepare()
    env = dict(os.environ, DAQFLOW_DATABASE_URL=empty_database)
    refused = subprocess.run([sys.executable, "-m", "pipelines.cli", "status"], cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 5 and "made by a daqflow without migrations" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_database_older_than_the_code_is_refused_until_db_upgrade(empty_database):
    migrate.upgrade("0012")  # as the daqflow before steps recorded their worker left it
    env = dict(os.environ, DAQFLOW_DATABASE_URL=empty_database)

    def daqflow(*args):
        return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=60)

    refused = daqflow("status")
    assert refused.returncode == 5 and "daqflow db upgrade" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    assert daqflow("db", "upgrade").returncode == 0
    assert migrate.current() == migrate.head()
    assert daqflow("status").returncode != 5
