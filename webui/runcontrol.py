"""The run-control page: DAQ state, run, sources with progress bars, and the buttons."""
from __future__ import annotations

import threading
import time
from datetime import timedelta

from flask import Blueprint, current_app, render_template, request
from htmx_flask import make_response
from sqlalchemy.exc import SQLAlchemyError

from models.columns import utcnow
from models.vocabulary import SERVER_OPERATIONS, TRANSITION_KINDS, RunClass, WorkflowKind
from pipelines.daq.nodes import checks
from pipelines.runcontrol import (
    abort,
    accounts,
    configs,
    health,
    launching,
    progress,
    runfields,
    status,
    timed,
)
from pipelines.runcontrol.errors import Invalid, NotFound, Refused, Unavailable
from webui import auth
from webui.errors import refusal
from webui.inputs import from_form, limits_from_form, parse_start, parse_stop
from webui.overview import overview

bp = Blueprint("runcontrol", __name__)


def live_context() -> dict:
    """Everything the live section shows: status, and the active (or last) workflow."""
    daq = status.status()
    workflow_id = daq["active_workflow"] or daq["last_workflow"]
    workflow = progress.read(workflow_id) if workflow_id else None
    by_server = {}
    if workflow:
        for stage in workflow["stages"]:
            for step in stage["steps"]:
                by_server[step["target"]] = step
    active = bool(workflow and workflow["active"])
    poll = current_app.config["POLL_SECONDS" if active else "IDLE_POLL_SECONDS"]
    # Each router's write rate and free disk, with a sparkline of the last quarter hour.
    recent = health.series(utcnow() - timedelta(minutes=15))
    router_health = {router: {**points[-1], "spark": health.sparkline(points)}
                     for router, points in recent.items() if points}
    return {"status": daq, "workflow": workflow, "step_of": by_server,
            "overview": overview(daq, by_server, workflow), "poll_seconds": f"{poll:g}",
            "router_health": router_health, "rendered_at": utcnow().isoformat()}


class _LiveCache:
    """The last render of the live section, shared by every poller for a short while."""

    def __init__(self):
        self.lock, self.html, self.rendered_at = threading.Lock(), None, float("-inf")

    def get(self, max_age: float) -> str:
        # One render at a time: pollers that arrive during it wait and share it.
        with self.lock:
            if self.html is None or time.monotonic() - self.rendered_at >= max_age:
                self.html = render_template("runcontrol/_live.html", **live_context())
                self.rendered_at = time.monotonic()
            return self.html


def _live(status_code: int = 200, fresh: bool = False, trigger: str | None = None):
    cache = current_app.extensions.setdefault("daqflow_live", _LiveCache())
    max_age = 0.0 if fresh else current_app.config["LIVE_CACHE_SECONDS"]
    return make_response(cache.get(max_age), status_code, trigger=trigger)


@bp.get("/")
def page():
    """The run-control page; the start and stop forms ask for the experiment's run fields,
    offering the previous run's values."""
    return render_template("runcontrol/page.html", transitions=TRANSITION_KINDS,
                           run_classes=list(RunClass), run_fields=runfields.described(),
                           configs=configs.listing(),
                           previous=runfields.previous_values(), **live_context())


@bp.get("/live")
def live():
    """The live section alone; it polls itself, faster while a workflow is active.

    When the database does not answer, 503 and nothing to swap: the page keeps what it
    showed, greyed, and says that the database does not answer (``daqflow.js``).
    """
    try:
        return _live()
    except SQLAlchemyError:
        return make_response("", 503, reswap="none")


def _launch(kind: WorkflowKind, **kwargs):
    try:
        launching.launch(kind, actor=auth.actor(), **kwargs)
    except (Refused, Unavailable) as exc:
        return refusal(exc)
    return _live(202, fresh=True, trigger="daqflow-clear-message")


def _form() -> dict:
    fields = request.form.to_dict()
    fields.pop(auth.CSRF_FIELD, None)  # checked already, by the guard
    return from_form(fields)


@bp.post("/actions/start")
def start_run():
    """Start a run (form fields ``title``, ``run_class``, ``comment``, ``field:<name>``, and
    its planned length: ``duration``, ``max_gb``, ``auto_restart``)."""
    try:
        form = _form()
        limits = limits_from_form(form)  # takes its inputs out of the form
        return _launch(WorkflowKind.START_RUN, **parse_start({**form, **limits}))
    except Invalid as exc:
        return refusal(exc)


@bp.post("/actions/stop")
def stop_run():
    """Stop the run that is going (form fields ``note``, ``field:<name>``)."""
    try:
        return _launch(WorkflowKind.STOP_RUN, **parse_stop(_form()))
    except Invalid as exc:
        return refusal(exc)


@bp.post("/actions/run-limits")
def run_limits():
    """Set the run going's planned length and automatic restart (form ``duration``,
    ``max_gb`` and ``auto_restart``; empty cancels a limit), or ``cancel`` them all."""
    run = status.status()["run"]
    if run is None:
        return refusal(Refused("no run is going: a planned length is set at the start"))
    try:
        form = _form()
        changes = {"duration_seconds": None, "max_bytes": None, "auto_restart": False}
        if not form.get("cancel"):
            changes.update(limits_from_form(form))
        timed.set_limits(run["number"], changes, actor=auth.actor())
    except (Invalid, Refused) as exc:
        return refusal(exc)
    return _live(fresh=True, trigger="daqflow-clear-message")


@bp.post("/actions/transition/<name>")
def transition(name: str):
    """Describe, prepare, configure or reset every source."""
    if name not in TRANSITION_KINDS:
        return refusal(NotFound(f"no transition {name!r}"))
    return _launch(WorkflowKind(name))


@bp.post("/actions/server/<name>/<operation>")
def server_step(name: str, operation: str):
    """Move one ECC server one step (form field ``force`` during a run)."""
    if operation not in SERVER_OPERATIONS:
        return refusal(NotFound(f"no operation {operation!r}"))
    try:
        return _launch(WorkflowKind.SERVER_STEP, server=name, operation=operation,
                       force=request.form.get("force") == "1")
    except (Invalid, NotFound) as exc:
        return refusal(exc)


def _configs(status_code: int = 200):
    return make_response(render_template("runcontrol/_configs.html",
                                         configs=configs.listing()), status_code,
                         trigger="daqflow-clear-message")


@bp.post("/actions/configs/read")
def read_configs():
    """The "Read configs" button: ask every ECC server GetConfigIDs now."""
    configs.read_offered()
    accounts.note(auth.actor(), "read_configs")
    return _configs()


@bp.post("/actions/configs/choose")
def choose_config():
    """Choose a config (form ``config``) for every server, or for one (form ``server``)."""
    try:
        configs.choose(request.form.get("config", ""), request.form.get("server") or None,
                       actor=auth.actor())
    except (Invalid, NotFound, Refused) as exc:
        return refusal(exc)
    return _configs()


@bp.post("/actions/abort")
def abort_active():
    """Abort the workflow that is active now."""
    active = status.status()["active_workflow"]
    if active is None:
        return refusal(Refused("no workflow is active: nothing to abort"))
    try:
        abort.abort(active, actor=auth.actor())
    except (Refused, NotFound) as exc:
        return refusal(exc)
    return _live(fresh=True, trigger="daqflow-clear-message")


@bp.post("/actions/check-routers")
def check_routers():
    """Check every node now: data routers (process, staging clean) and ECC server processes."""
    checks.check_nodes()
    accounts.note(auth.actor(), "check_nodes")
    return _live(fresh=True)
