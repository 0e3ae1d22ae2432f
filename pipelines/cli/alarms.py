"""``daqflow alarms``: the active alarms and the history, and acknowledging one."""
from __future__ import annotations

import json

import click

from pipelines.cli.common import database, fail


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def alarms(ctx, as_json):
    """The active alarms (and with --json the history too)."""
    if ctx.invoked_subcommand is not None:
        return
    from pipelines.runcontrol import alarms as daq_alarms

    database()
    listing = daq_alarms.listing()
    if as_json:
        click.echo(json.dumps(listing, indent=2))
        return
    for alarm in listing["active"]:
        state = "cleared" if alarm["cleared_at"] else "holds"
        acked = f", acknowledged by {alarm['acked_by']}" if alarm["acked_by"] else ""
        click.echo(f"{alarm['id']:>5}  {alarm['kind']:<16} {alarm['message']} ({state}{acked})")
    click.echo(f"{len(listing['active'])} active alarm(s)")


@alarms.command("ack")
@click.argument("alarm_id", type=int)
def alarms_ack(alarm_id):
    """Acknowledge an alarm: you have seen it (audited)."""
    from pipelines.cli.runs import refused_or_unavailable
    from pipelines.runcontrol import alarms as daq_alarms
    from pipelines.runcontrol.errors import NotFound, Refused

    database()
    try:
        daq_alarms.acknowledge(alarm_id)
    except NotFound as exc:
        fail(str(exc))
    except Refused as exc:
        refused_or_unavailable(exc)
    click.echo(f"alarm {alarm_id} acknowledged")
