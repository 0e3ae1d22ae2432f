"""What every command group shares: failing with a message and an exit code, and a
database with this daqflow's schema."""
from __future__ import annotations

import sys

import click

# Exit codes a script can tell apart.
EXIT_FAILED = 1        # the workflow ran and did not succeed
EXIT_USAGE = 2         # bad input: a file, a name, a setting
EXIT_REFUSED = 3       # a run-control rule refused the request
EXIT_UNAVAILABLE = 4   # the broker could not be reached
EXIT_SCHEMA = 5        # the database's schema is not this daqflow's


def fail(message: str, code: int = EXIT_USAGE):
    """Print ``daqflow: message`` on stderr and exit with ``code``."""
    click.echo(f"daqflow: {message}", err=True)
    sys.exit(code)


def database() -> None:
    """Create an empty database's tables; refuse one at another schema (exit 5)."""
    from models import migrate

    migrate.prepare()
