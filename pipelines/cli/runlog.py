"""``daqflow runs``: the run log from a shell (list, show, note)."""
from __future__ import annotations

import json

import click

from pipelines.cli.common import database, fail


def field_values(pairs: tuple[str, ...]) -> dict:
    """``NAME=VALUE`` pairs (``--field``) as a dict; the values are checked by run control."""
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            fail(f"--field takes NAME=VALUE, not {pair!r}")
        out[name] = value
    return out


field_option = click.option(
    "--field", "fields", multiple=True, metavar="NAME=VALUE",
    help="A custom run field (repeat for several; see `daqflow runs fields`).")


@click.group()
def runs():
    """The run log: every run with its sheet, note, fields, files and outcome."""


@runs.command("list")
@click.option("--class", "run_class", help="Only runs of this class.")
@click.option("--since", help="Started on or after this date (YYYY-MM-DD, UTC).")
@click.option("--until", help="Started on or before this date (YYYY-MM-DD, UTC).")
@click.option("--search", "text", default="", help="Text in the title, comment or note.")
@click.option("--page", type=int, default=1, show_default=True)
@click.option("--per-page", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON document (this page).")
@click.option("--csv", "as_csv", is_flag=True, help="CSV of every matching run (no pages).")
def runs_list(run_class, since, until, text, page, per_page, as_json, as_csv):
    """Runs, newest first."""
    from pipelines.runcontrol import runlog
    from pipelines.runcontrol.errors import Invalid

    database()
    try:
        flt = runlog.parse_filter({"run_class": run_class, "since": since, "until": until,
                                   "q": text, "page": page, "per_page": per_page})
    except Invalid as exc:
        fail(str(exc))
    listing = runlog.list_runs(flt, everything=as_csv)
    if as_csv:
        click.echo(runlog.csv_text(listing), nl=False)
    elif as_json:
        click.echo(json.dumps(listing, indent=2))
    else:
        for run in listing["runs"]:
            click.echo(f"{run['number']:>6}  {run['run_class']:<4}  {run['started_at'] or '':<32}  "
                       f"{run['outcome']:<19}  {run['title']}")
        click.echo(f"{listing['total']} run(s)")


@runs.command("show")
@click.argument("number", type=int)
@click.option("--json", "as_json", is_flag=True)
def runs_show(number, as_json):
    """One run: its sheet, note history, files, workflows and audit."""
    from pipelines.runcontrol import runlog
    from pipelines.runcontrol.errors import NotFound

    database()
    try:
        run = runlog.run_detail(number)
    except NotFound as exc:
        fail(str(exc))
    if as_json:
        click.echo(json.dumps(run, indent=2))
        return
    for key in ("title", "run_class", "config", "started_at", "started_by", "stopped_at",
                "stopped_by", "duration_seconds", "files", "bytes", "outcome", "comment",
                "note"):
        click.echo(f"{key:<17} {'' if run[key] is None else run[key]}")
    for name, value in run["fields"].items():
        click.echo(f"{name:<17} {value}")
    for note in run["notes"][1:]:
        click.echo(f"  earlier note by {note['author']} at {note['written_at']}: {note['text']}")
    for workflow in run["workflows"]:
        click.echo(f"  workflow {workflow['id']} {workflow['kind']}: {workflow['state']}")


@runs.command("note")
@click.argument("number", type=int)
@click.argument("text")
@field_option
def runs_note(number, text, fields):
    """Write a run's note (earlier versions are kept), and optionally fields."""
    from pipelines.runcontrol import runlog
    from pipelines.runcontrol.errors import Invalid, NotFound

    database()
    try:
        runlog.edit(number, {"note": text, "fields": field_values(fields)}, actor=None)
    except (Invalid, NotFound) as exc:
        fail(str(exc))
    click.echo(f"run {number}: note saved")


@runs.command("fields")
def runs_fields():
    """The experiment's custom run fields."""
    from pipelines.runcontrol import runfields

    database()
    for field in runfields.described():
        extra = field["unit"] or ", ".join(field["choices"])
        click.echo(f"{field['name']:<20} {field['type']:<7} {extra:<20} asked at "
                   f"{field['asked_at']}{', required' if field['required'] else ''}")
