"""``daqflow run``, ``transition``, ``status`` and ``unlock``: driving the DAQ from a shell."""
from __future__ import annotations

import json
import sys
import time

import click

from models.vocabulary import (
    SERVER_OPERATIONS,
    TRANSITION_KINDS,
    RunClass,
    WorkflowKind,
    WorkflowState,
)
from pipelines.cli.common import EXIT_FAILED, EXIT_REFUSED, EXIT_UNAVAILABLE, database, fail
from pipelines.cli.runlog import field_option, field_values


def refused_or_unavailable(exc: Exception):
    """Exit 3 for a run-control rule, 4 for an unreachable broker."""
    from pipelines.runcontrol.errors import Refused

    fail(str(exc), code=EXIT_REFUSED if isinstance(exc, Refused) else EXIT_UNAVAILABLE)


def _launch(kind: WorkflowKind, wait: bool, **kwargs):
    from pipelines.runcontrol import launching
    from pipelines.runcontrol.errors import Invalid, NotFound, Refused, Unavailable

    database()
    try:
        workflow_id = launching.launch(kind, **kwargs)
    except (Invalid, NotFound) as exc:
        fail(str(exc))
    except (Refused, Unavailable) as exc:
        refused_or_unavailable(exc)
    click.echo(f"workflow {workflow_id} ({kind}) started")
    if wait:
        sys.exit(wait_for_workflow(workflow_id))


def _bar(fraction: float, width: int = 30) -> str:
    filled = int(round(fraction * width))
    return "#" * filled + "." * (width - filled)


def wait_for_workflow(workflow_id: int, interval: float = 0.5) -> int:
    """Show a workflow's stages until it ends; 0 if it succeeded, 1 if not."""
    from pipelines.runcontrol import progress

    interactive = sys.stdout.isatty()
    last = None
    while True:
        view = progress.read(workflow_id)
        lines = [f"  {st['name']:<20} [{_bar(st['done'] / st['total'] if st['total'] else 0)}] "
                 f"{st['done']}/{st['total']} {st['state']}" for st in view["stages"]]
        if interactive and last is not None:
            sys.stdout.write(f"\x1b[{len(last)}F")
        if interactive or lines != last:
            click.echo("\n".join(lines))
        last = lines
        if not view["active"]:
            break
        time.sleep(interval)
    click.echo(f"workflow {workflow_id} {view['state']}")
    if view["error"]:
        click.echo(view["error"], err=True)
    return 0 if view["state"] == WorkflowState.SUCCEEDED else EXIT_FAILED


@click.group()
def run():
    """Start and stop runs."""


@run.command("start")
@click.option("--title", default="", help="Run title.")
@click.option("--class", "run_class", default=RunClass.TEST.value, show_default=True,
              type=click.Choice([run_class.value for run_class in RunClass]))
@click.option("--comment", default="", help="What this run is for, in a few words.")
@field_option
@click.option("--duration", default="", help="Stop it after this long: 30m, 1h30m, 90s.")
@click.option("--max-size", default="", help="Stop it once the routers hold this: 20GB.")
@click.option("--auto-restart", is_flag=True,
              help="At the limit, start the next run with the same settings, and so on.")
@click.option("--wait", is_flag=True, help="Show progress; exit 0 only if the run started.")
def run_start(title, run_class, comment, fields, duration, max_size, auto_restart, wait):
    """Start a run (every source must be READY)."""
    _launch(WorkflowKind.START_RUN, wait, title=title, run_class=run_class, comment=comment,
            fields=field_values(fields), **_limits(duration, max_size, auto_restart))


def _limits(duration: str, max_size: str, auto_restart: bool | None) -> dict:
    from pipelines.runcontrol.errors import Invalid
    from pipelines.runcontrol.texts import duration_seconds, size_bytes

    try:
        out = {"duration_seconds": duration_seconds("--duration", duration),
               "max_bytes": size_bytes("--max-size", max_size)}
    except Invalid as exc:
        fail(str(exc))
    if auto_restart is not None:
        out["auto_restart"] = auto_restart
    return out


@run.command("limits")
@click.argument("number", type=int)
@click.option("--duration", default="", help="Stop it this long after its start (30m).")
@click.option("--max-size", default="", help="Stop it once the routers hold this (20GB).")
@click.option("--auto-restart/--no-auto-restart", default=False,
              help="Start the next run at the limit.")
@click.option("--cancel", is_flag=True, help="No limit and no automatic restart any more.")
def run_limits(number, duration, max_size, auto_restart, cancel):
    """Set the planned length of run NUMBER, the run going (what is not given is cancelled)."""
    from pipelines.runcontrol import timed
    from pipelines.runcontrol.errors import Invalid, Refused

    database()
    changes = ({"duration_seconds": None, "max_bytes": None, "auto_restart": False} if cancel
               else _limits(duration, max_size, auto_restart))
    try:
        plan = timed.set_limits(number, changes)
    except Invalid as exc:
        fail(str(exc))
    except Refused as exc:
        refused_or_unavailable(exc)
    click.echo(json.dumps(plan, indent=2))


@run.command("stop")
@click.option("--note", default="", help="What happened during the run (editable later).")
@field_option
@click.option("--wait", is_flag=True, help="Show progress; exit 0 only if the run stopped.")
def run_stop(note, fields, wait):
    """Stop the run that is going."""
    _launch(WorkflowKind.STOP_RUN, wait, note=note, fields=field_values(fields))


@click.command()
@click.argument("name", type=click.Choice(sorted({kind.value for kind in TRANSITION_KINDS}
                                                 | set(SERVER_OPERATIONS))))
@click.option("--server", help="Move only this ECC server, one step.")
@click.option("--force", is_flag=True, help="With --server: move it although a run is going.")
@click.option("--wait", is_flag=True, help="Show progress; exit 0 only on success.")
def transition(name, server, force, wait):
    """Take every source through a transition (reset: one step back), or with --server one
    ECC server one step (describe ... breakup, undo, reset)."""
    if server is None:
        if name not in TRANSITION_KINDS or force:
            fail(f"{name}{' --force' if force else ''} needs --server (every server together: "
                 f"{', '.join(TRANSITION_KINDS)})")
        _launch(WorkflowKind(name), wait)
    else:
        _launch(WorkflowKind.SERVER_STEP, wait, server=server, operation=name, force=force)


@click.command()
@click.option("--yes", is_flag=True, help="Confirm that no workflow is running any more.")
def unlock(yes):
    """Free the run-control lock of a workflow whose process died (it also expires)."""
    from pipelines.runcontrol import lock

    if not yes:
        fail("unlock frees run control for everyone; check that no workflow is running, "
             "then repeat with --yes")
    lock.clear()
    click.echo("run-control lock released")


@click.command()
@click.option("--json", "as_json", is_flag=True)
def status(as_json):
    """The DAQ's overall state, the current run and the active workflow."""
    from pipelines.runcontrol import status as daq_status

    database()
    view = daq_status.status()
    if as_json:
        click.echo(json.dumps(view, indent=2))
        return
    run_line = (f"run {view['run']['number']} '{view['run']['title']}' since "
                f"{view['run']['started_at']}" if view["run"] else "no run is going")
    click.echo(f"experiment {view['experiment']}: DAQ {view['state']}, {run_line}")
    if view["active_workflow"]:
        click.echo(f"active workflow: {view['active_workflow']}")
    for source in view["sources"]:
        click.echo(f"  {source['name']:<16} {source['ecc_server']:<16} {source['state']}")
