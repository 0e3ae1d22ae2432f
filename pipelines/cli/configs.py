"""``daqflow configs``: what each ECC server offers, and the config for the next Describe."""
from __future__ import annotations

import json

import click

from pipelines.cli.common import database, fail


@click.group()
def configs():
    """Configs from the ECC servers (GetConfigIDs), and choosing one."""


def _show(listing: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(listing, indent=2))
        return
    click.echo(f"offered by every server: {', '.join(listing['common']) or 'none read yet'}")
    for server in listing["servers"]:
        offers = server["error"] or ", ".join(server["offered"]) or "-"
        click.echo(f"  {server['name']:<16} next: {server['chosen']:<16} offers: {offers}")


@configs.command("list")
@click.option("--json", "as_json", is_flag=True)
def configs_list(as_json):
    """Each server's chosen config and what it offered when last read."""
    from pipelines.runcontrol import configs as server_configs

    database()
    _show(server_configs.listing(), as_json)


@configs.command("refresh")
@click.option("--json", "as_json", is_flag=True)
def configs_refresh(as_json):
    """Ask every ECC server GetConfigIDs now."""
    from pipelines.runcontrol import accounts
    from pipelines.runcontrol import configs as server_configs

    database()
    server_configs.read_offered()
    accounts.note(None, "read_configs")
    _show(server_configs.listing(), as_json)


@configs.command("choose")
@click.argument("name")
@click.option("--server", help="Only this ECC server (default: every server).")
def configs_choose(name, server):
    """Choose the config for the next Describe (only one every chosen server offers)."""
    from pipelines.cli.runs import refused_or_unavailable
    from pipelines.runcontrol import configs as server_configs
    from pipelines.runcontrol.errors import Invalid, NotFound, Refused

    database()
    try:
        listing = server_configs.choose(name, server)
    except (Invalid, NotFound) as exc:
        fail(str(exc))
    except Refused as exc:
        refused_or_unavailable(exc)
    _show(listing, as_json=False)
