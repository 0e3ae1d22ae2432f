"""``daqflow workflow``: a workflow's stages and steps, and replaying what failed."""
from __future__ import annotations

import json
import sys

import click

from pipelines.cli.common import database, fail
from pipelines.cli.runs import refused_or_unavailable, wait_for_workflow


@click.group()
def workflow():
    """Inspect and replay workflows."""


@workflow.command("show")
@click.argument("workflow_id", type=int)
@click.option("--json", "as_json", is_flag=True)
def workflow_show(workflow_id, as_json):
    """A workflow's stages and steps."""
    from pipelines.runcontrol import progress
    from pipelines.runcontrol.errors import NotFound

    try:
        view = progress.read(workflow_id)
    except NotFound as exc:
        fail(str(exc))
    if as_json:
        click.echo(json.dumps(view, indent=2))
        return
    click.echo(f"workflow {view['id']} {view['kind']}: {view['state']}")
    if view["error"]:
        click.echo(f"  error: {view['error']}")
    for stage in view["stages"]:
        click.echo(f"  {stage['name']}: {stage['state']} ({stage['done']}/{stage['total']})")
        for step in stage["steps"]:
            took = f" {step['duration']:.2f}s" if step["duration"] is not None else ""
            error = f" — {step['error']}" if step["error"] else ""
            click.echo(f"    {step['target']} {step['operation']} #{step['attempt']} "
                       f"{step['state']}{took}{error}")
    if view["files"]:
        files = view["files"]
        click.echo(f"  files of run {files['run_number']}: "
                   f"{'organized' if files['organized_at'] else 'NOT all organized'}")
        for row in files["data"] + files["configs"]:
            click.echo(f"    {row['kind']:<7} {row['target']:<16} {row['files']:>5} files "
                       f"{row['bytes']:>12} bytes  {row['node']}:{row['folder']}")


@workflow.command("replay")
@click.argument("workflow_id", type=int)
@click.option("--dry-run", is_flag=True, help="Only say what a replay would do.")
@click.option("--wait", is_flag=True, help="Show progress; exit 0 only if it then succeeds.")
def workflow_replay(workflow_id, dry_run, wait):
    """Replay a failed or aborted workflow's unsuccessful steps, then what follows them."""
    from pipelines.runcontrol import replay
    from pipelines.runcontrol.errors import NotFound, Refused, Unavailable

    database()
    try:
        planned = replay.preview(workflow_id) if dry_run else replay.replay(workflow_id)
    except NotFound as exc:
        fail(str(exc))
    except (Refused, Unavailable) as exc:
        refused_or_unavailable(exc)
    for step in planned["steps"]:
        last = f"; last: {step['last_error']}" if step["last_error"] else ""
        click.echo(f"  runs again: {step['target']} {step['operation']} "
                   f"(was {step['last_state']}{last})")
    click.echo(f"  then: {', '.join(planned['then'])}")
    click.echo(f"  left alone: {planned['left_alone']} succeeded step(s)")
    redone = ", ".join(planned["replayed_steps"]) or "no step (the callback alone)"
    if dry_run:
        click.echo(f"workflow {workflow_id} would replay: {redone} (nothing done)")
        return
    click.echo(f"workflow {workflow_id} replayed: {redone}")
    if wait:
        sys.exit(wait_for_workflow(workflow_id))


@workflow.command("abort")
@click.argument("workflow_id", type=int)
def workflow_abort(workflow_id):
    """Abort an active workflow: running steps stop at their next poll, nothing more runs."""
    from pipelines.runcontrol import abort
    from pipelines.runcontrol.errors import NotFound, Refused

    database()
    try:
        done = abort.abort(workflow_id)
    except NotFound as exc:
        fail(str(exc))
    except Refused as exc:
        refused_or_unavailable(exc)
    click.echo(f"workflow {workflow_id} aborted; running: {', '.join(done['running']) or 'none'}"
               f"; not started: {', '.join(done['not_started']) or 'none'}")
