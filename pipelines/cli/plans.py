"""``daqflow plan``: run a plan file, watch it, resume, skip or abort it."""
from __future__ import annotations

import json
from pathlib import Path

import click

from pipelines.cli.common import database, fail


def _show(view: dict | None) -> None:
    if view is None:
        click.echo("no run plan yet")
        return
    click.echo(f"plan {view['id']} ({view['name']}): {view['state']}"
               + (f": {view['error']}" if view["error"] else ""))
    for entry in view["entries"]:
        run = f"run {entry['run']}" if entry["run"] is not None else ""
        left = entry["plan"]["stops_in_seconds"] if entry["plan"] else None
        countdown = f", stops in {left:.0f} s" if left is not None else ""
        click.echo(f"  {entry['position']:>3} {entry['title'][:40]:<40} "
                   f"{entry['config'] or 'as is':<12} {entry['state']:<12} {run}{countdown}")


def _call(action, *args):
    from pipelines.cli.runs import refused_or_unavailable
    from pipelines.runcontrol.errors import Invalid, NotFound, Refused, Unavailable

    database()
    try:
        return action(*args)
    except (Invalid, NotFound) as exc:
        fail(str(exc))
    except (Refused, Unavailable) as exc:
        refused_or_unavailable(exc)


@click.group()
def plan():
    """Run plans: a list of runs daqflow takes one after the other."""


@plan.command("run")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def plan_run(file):
    """Run the plan in FILE (TOML: name, then [[entries]] with title, run_class, config,
    duration and/or max_size, comment, fields)."""
    from pipelines.runcontrol import planfile, plans

    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"{file}: cannot read it as UTF-8 text: {exc}")
    plan_id = _call(lambda: plans.create(planfile.read_toml(text)))
    _show(plans.view(plan_id))


@plan.command("show")
@click.option("--json", "as_json", is_flag=True)
def plan_show(as_json):
    """The current (or last) plan and its entries."""
    from pipelines.runcontrol import plans

    database()
    view = plans.view()
    click.echo(json.dumps(view, indent=2)) if as_json else _show(view)


def _action(name: str, doc: str):
    @plan.command(name, help=doc)
    @click.argument("plan_id", type=int)
    def command(plan_id):
        from pipelines.runcontrol import plans

        _call(getattr(plans, name), plan_id)
        _show(plans.view(plan_id))
    return command


_action("resume", "Go on with a paused plan (its failed workflow is replayed first).")
_action("skip", "Skip a paused plan's current entry and go on.")
_action("abort", "End a plan: nothing more is started.")
