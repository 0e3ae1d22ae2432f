"""Schema migrations with Alembic: `daqflow db upgrade`, and the start-up check.

The tables are defined in ``models``; every change to them comes with a migration
in ``models/migrations/versions`` (``revision()`` writes one from the difference).
A new database is created by running them all. Commands call ``prepare()`` before
they use the database; the web app factory does not (``daqflow up`` and ``daqflow
web`` prepare it first), as Flask's ``init-db`` pattern has it.
"""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from models.db import get_engine
from models.settings import database_url

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def _config(connection=None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest revision this version of daqflow knows."""
    return ScriptDirectory.from_config(_config()).get_current_head()


def current() -> str | None:
    """The revision the configured database is at (None: not created by Alembic)."""
    with get_engine().connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(revision: str = "head") -> None:
    """Bring the configured database up to ``revision`` (creating it if empty)."""
    with get_engine().begin() as connection:
        command.upgrade(_config(connection), revision)


def revision(message: str) -> None:
    """Write a new migration from the difference between the models and the database."""
    with get_engine().begin() as connection:
        command.revision(_config(connection), message=message, autogenerate=True)


class SchemaOutOfDate(RuntimeError):
    """The database's schema is not the one this daqflow needs; the message says what to do."""


def prepare(auto_upgrade: bool = False) -> None:
    """Make sure the database has this daqflow's schema before anything uses it.

    An empty database is created by running every migration. One at an older
    revision is upgraded only when ``auto_upgrade`` (the demo); otherwise the
    operator runs ``daqflow db upgrade``, after a backup, deliberately.
    """
    at, newest = current(), head()
    if at == newest:
        return
    if at is None:
        with get_engine().connect() as connection:
            tables = inspect(connection).get_table_names()
        if "workflow" in tables or "eccserver" in tables:
            raise SchemaOutOfDate(
                f"the database at {_safe(database_url())} was made by a daqflow without "
                "migrations; its tables lack today's columns: back it up and delete it "
                "(or point DAQFLOW_DATABASE_URL at an empty one)")
        upgrade()
        return
    if not auto_upgrade:
        raise SchemaOutOfDate(
            f"the database is at schema revision {at}, this daqflow needs {newest}: "
            "back it up, then run `daqflow db upgrade`")
    upgrade()


def _safe(url: str) -> str:
    # Never print a password from the URL.
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
