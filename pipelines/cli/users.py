"""``daqflow user``: accounts and API tokens."""
from __future__ import annotations

import sys

import click

from models.vocabulary import Role
from pipelines.cli.common import database, fail


@click.group()
def user():
    """Accounts: operators start, stop, transition and replay; viewers look."""


def _read_password(confirm: bool = True) -> str:
    if sys.stdin.isatty():
        return click.prompt("password", hide_input=True, confirmation_prompt=confirm)
    return sys.stdin.readline().rstrip("\n")  # a script pipes it in


@user.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice([role.value for role in Role]), default=Role.VIEWER.value,
              show_default=True)
@click.option("--replace", is_flag=True, help="Set an existing account's password and role.")
def user_add(name, role, replace):
    """Create an account; the password comes from a prompt, or from stdin's first line."""
    from pipelines.runcontrol import accounts

    database()
    try:
        accounts.add(name, _read_password(), role=role, replace=replace)
    except accounts.AccountError as exc:
        fail(str(exc))
    click.echo(f"account {name} ({role}) {'updated' if replace else 'created'}")


@user.command("token")
@click.argument("name")
def user_token(name):
    """Print a new API token for NAME (the previous one stops working)."""
    from pipelines.runcontrol import accounts

    database()
    try:
        click.echo(accounts.issue_token(name))
    except accounts.AccountError as exc:
        fail(str(exc))
    click.echo("send it as 'Authorization: Bearer <token>'; it is not shown again", err=True)
