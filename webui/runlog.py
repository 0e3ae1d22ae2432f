"""The run log pages: every run (filters, pages, CSV and JSON exports), one run's whole story
with its note and fields editable by operators, and the experiment's custom run fields."""
from __future__ import annotations

from datetime import datetime

from flask import Blueprint, make_response, render_template, request, url_for
from htmx_flask import make_response as htmx_response

from pipelines.runcontrol import health, runfields, runlog
from pipelines.runcontrol.errors import Invalid, NotFound
from webui import auth
from webui.errors import error_status, refusal
from webui.inputs import from_form

bp = Blueprint("runlog", __name__, url_prefix="/runs")


def _export_links(args: dict) -> dict:
    return {"csv": url_for("api.runs_csv", **args), "json": url_for("api.runs", **args)}


@bp.get("/")
def index():
    """Runs, newest first, one page at a time, filtered by class, start date and text."""
    args = {key: value for key, value in request.args.items() if value}
    try:
        flt = runlog.parse_filter(args)
    except Invalid as exc:
        return make_response(render_template(
            "runlog/index.html", listing=None, args=args, error=str(exc),
            classes=runlog.classes(), exports=None), error_status(exc))
    listing = runlog.list_runs(flt)
    pages = max(1, -(-listing["total"] // flt.per_page))
    exports = _export_links({k: v for k, v in args.items() if k not in ("page", "per_page")})
    return render_template("runlog/index.html", listing=listing, args=args, error=None,
                           classes=runlog.classes(), pages=pages, exports=exports,
                           page_url=lambda page: url_for("runlog.index", **(args | {"page": page})))


@bp.get("/<int(max=2147483647):number>")
def show(number: int):
    """One run: its sheet, the note with its history, workflows, files, backups, audit."""
    try:
        run = runlog.run_detail(number)
    except NotFound as exc:
        return make_response(render_template("runlog/missing.html", message=str(exc)), 404)
    return render_template("runlog/show.html", run=run, run_fields=runfields.described(),
                           rates=_rates_during(run))


def _rates_during(run: dict) -> dict[str, dict]:
    """Each data router's write rate over the whole run, drawn as SVG points, and its peak."""
    if not run["started_at"]:
        return {}
    until = datetime.fromisoformat(run["stopped_at"]) if run["stopped_at"] else None
    during = health.series(datetime.fromisoformat(run["started_at"]), until=until)
    return {router: {"points": health.sparkline(points, width=400, height=60),
                     "peak": max((p["rate"] or 0.0 for p in points), default=0.0)}
            for router, points in during.items()}


@bp.post("/<int(max=2147483647):number>")
def edit(number: int):
    """Change the note and the custom fields (form ``note``, ``field:<name>``); audited."""
    changes = from_form({key: value for key, value in request.form.items()
                         if key != auth.CSRF_FIELD})
    try:
        runlog.edit(number, changes, actor=auth.actor())
    except (Invalid, NotFound) as exc:
        return refusal(exc)
    return htmx_response(render_template("runlog/_record.html", run=runlog.run_detail(number),
                                         run_fields=runfields.described()),
                         trigger="daqflow-clear-message")


@bp.get("/fields")
def fields_page():
    """The experiment's custom run fields; operators add, change and remove them."""
    return render_template("runlog/fields.html", run_fields=runfields.described())


@bp.post("/fields")
def save_field():
    """Add a field, change one (``previous_name``), or remove one (``remove``); audited."""
    form = request.form
    try:
        if form.get("remove"):
            runfields.remove_definition(form.get("previous_name", ""), actor=auth.actor())
        else:
            spec = {"name": form.get("name", ""), "type": form.get("type", "text"),
                    "unit": form.get("unit", ""),
                    "choices": [c.strip() for c in form.get("choices", "").split(",")
                                if c.strip()],
                    "asked_at": form.get("asked_at", "start"),
                    "required": form.get("required") == "on"}
            runfields.save_definition(spec, actor=auth.actor(),
                                      previous_name=form.get("previous_name") or None)
    except (Invalid, NotFound) as exc:
        return refusal(exc)
    return htmx_response(render_template("runlog/_fields.html",
                                         run_fields=runfields.described()),
                         trigger="daqflow-clear-message")
