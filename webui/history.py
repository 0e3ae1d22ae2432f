"""Workflow pages: one workflow's stages and steps, and the history of all workflows."""
from __future__ import annotations

from flask import Blueprint, abort, current_app, make_response, render_template
from sqlmodel import select

from models import Run, Workflow, session
from models.vocabulary import REPLAYABLE_STATES
from pipelines.runcontrol import abort as aborting
from pipelines.runcontrol import accounts, progress, replay
from pipelines.runcontrol.errors import NotFound, Refused, Unavailable
from webui import auth
from webui.errors import refusal

bp = Blueprint("history", __name__, url_prefix="/workflows")


@bp.get("/")
def index():
    """Every workflow, newest first, with its outcome."""
    with session() as s:
        rows = s.exec(select(Workflow, Run).join(Run, Workflow.run_id == Run.id, isouter=True)
                      .order_by(Workflow.id.desc()).limit(500)).all()
    return render_template("history/index.html", rows=rows)


def _workflow_or_404(workflow_id: int) -> dict:
    try:
        return progress.read(workflow_id)
    except NotFound:
        abort(404)


def _render(template: str, workflow_id: int) -> str:
    workflow = _workflow_or_404(workflow_id)
    return render_template(template, workflow=workflow,
                           actions=accounts.actions_of(workflow_id),
                           replay_plan=_replay_plan(workflow),
                           poll_seconds=current_app.config["POLL_SECONDS"])


def _replay_plan(workflow: dict) -> dict | None:
    """What the Replay button would do, for its confirmation (None: no replay now)."""
    if workflow["state"] not in REPLAYABLE_STATES:
        return None
    try:
        return replay.preview(workflow["id"])
    except (Refused, NotFound):
        return None


@bp.get("/<int(max=2147483647):workflow_id>")
def show(workflow_id: int):
    """One workflow: who asked for it, stages, steps, attempts, durations and errors."""
    return _render("history/show.html", workflow_id)


@bp.get("/<int(max=2147483647):workflow_id>/live")
def live(workflow_id: int):
    """The workflow's stages and steps alone; polls itself while the workflow is active."""
    return _render("history/_workflow.html", workflow_id)


@bp.post("/<int(max=2147483647):workflow_id>/abort")
def abort_workflow(workflow_id: int):
    """The "Abort" button: cut an active workflow loose; answers the workflow section."""
    try:
        aborting.abort(workflow_id, actor=auth.actor())
    except (Refused, NotFound) as exc:
        return refusal(exc)
    return _render("history/_workflow.html", workflow_id)


@bp.post("/<int(max=2147483647):workflow_id>/replay")
def replay_failed(workflow_id: int):
    """The "Replay failed steps" button; answers the workflow section, now polling."""
    try:
        replay.replay(workflow_id, actor=auth.actor())
    except (Refused, NotFound, Unavailable) as exc:
        return refusal(exc)
    return make_response(_render("history/_workflow.html", workflow_id), 202)
