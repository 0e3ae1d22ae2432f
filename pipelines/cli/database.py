"""``daqflow db``: the database's schema (Alembic migrations)."""
from __future__ import annotations

import click


@click.group()
def db():
    """The database's schema (Alembic migrations)."""


@db.command("upgrade")
def db_upgrade():
    """Apply the migrations this daqflow brings (back the database up first)."""
    from models import migrate

    before = migrate.current()
    migrate.upgrade()
    click.echo(f"database schema: {before or 'empty'} -> {migrate.current()}")


@db.command("current")
def db_current():
    """The schema revision of the database, and the one this daqflow needs."""
    from models import migrate

    click.echo(f"database: {migrate.current() or 'empty'}; this daqflow: {migrate.head()}")
