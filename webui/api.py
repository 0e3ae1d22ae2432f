"""The JSON interface for scripts: start, stop, transitions, workflow progress, status."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from flask import Blueprint, Response, jsonify, request

from models.columns import utcnow
from models.vocabulary import SERVER_OPERATIONS, TRANSITION_KINDS, WorkflowKind
from pipelines.runcontrol import (
    abort,
    accounts,
    alarms,
    configs,
    health,
    launching,
    plans,
    progress,
    replay,
    runlog,
    timed,
)
from pipelines.runcontrol import status as daq_status
from pipelines.runcontrol.errors import Invalid, NotFound, Refused, Unavailable
from webui import auth, openapi
from webui.errors import error_status
from webui.inputs import parse_start, parse_stop

bp = Blueprint("api", __name__, url_prefix="/api")


def _json_body() -> dict:
    """The request's JSON object ({} for no body); a form, text or anything else is 400."""
    raw = request.get_data(cache=True)
    if not raw:
        if request.form:
            raise Invalid("send the fields as a JSON object (Content-Type: application/json)")
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # not UTF-8, not JSON, or nested beyond reason
        data = None
    if not isinstance(data, dict):
        raise Invalid("the body must be a JSON object")
    return data


@bp.errorhandler(Refused)
@bp.errorhandler(NotFound)
@bp.errorhandler(Unavailable)
@bp.errorhandler(Invalid)
def _error(exc: Exception):
    return jsonify(error=str(exc)), error_status(exc)


def _accepted(workflow_id: int):
    return jsonify(workflow_id=workflow_id), 202


@bp.post("/runs/start")
def start_run():
    """``{"title", "run_class", "comment", "fields"}`` -> 202 ``{"workflow_id"}``."""
    return _accepted(launching.launch(WorkflowKind.START_RUN, actor=auth.actor(),
                                      **parse_start(_json_body())))


@bp.post("/runs/stop")
def stop_run():
    """``{"note", "fields"}`` (both optional) -> 202 ``{"workflow_id"}``."""
    return _accepted(launching.launch(WorkflowKind.STOP_RUN, actor=auth.actor(),
                                      **parse_stop(_json_body())))


@bp.get("/runs")
def runs():
    """The run log, newest first: ``?run_class=&since=&until=&q=&page=&per_page=``."""
    return jsonify(runlog.list_runs(runlog.parse_filter(request.args.to_dict())))


@bp.get("/runs.csv")
def runs_csv():
    """The run log as CSV: every run that matches the filters (paging is ignored)."""
    listing = runlog.list_runs(runlog.parse_filter(request.args.to_dict()), everything=True)
    return Response(runlog.csv_text(listing), mimetype="text/csv",
                    headers={"Content-Disposition": "attachment; filename=runs.csv"})


@bp.get("/runs/<int(max=2147483647):number>")
def run(number: int):
    """One run: its sheet, the note's history, workflows, files, config backups, audit."""
    return jsonify(runlog.run_detail(number))


@bp.patch("/runs/<int(max=2147483647):number>")
def edit_run(number: int):
    """``{"note", "fields"}`` -> the run as now (operators; audited, every note kept)."""
    return jsonify(runlog.edit(number, _json_body(), actor=auth.actor()))


@bp.patch("/runs/<int(max=2147483647):number>/limits")
def run_limits(number: int):
    """``{"duration_seconds", "max_bytes", "auto_restart"}`` (null cancels a limit) -> the
    run going's plan (operators; audited)."""
    return jsonify(timed.set_limits(number, _json_body(), actor=auth.actor()))


@bp.post("/plans")
def start_plan():
    """``{"name", "entries": [...]}`` -> 201 the plan, its first step taken (operators)."""
    return jsonify(plans.view(plans.create(_json_body(), actor=auth.actor()))), 201


@bp.get("/plans/current")
def current_plan():
    """The current (or last) run plan with its entries, or null."""
    return jsonify(plans.view())


@bp.post("/plans/<int(max=2147483647):plan_id>/<action>")
def plan_action(plan_id: int, action: str):
    """Resume, skip (the current entry) or abort a plan -> the plan."""
    handler = plans.ACTIONS.get(action)
    if handler is None:
        raise NotFound(f"no plan action {action!r}; use resume, skip or abort")
    if _json_body():
        raise Invalid(f"{action} takes no fields")
    handler(plan_id, actor=auth.actor())
    return jsonify(plans.view(plan_id))


@bp.post("/transitions/<name>")
def transition(name: str):
    """Describe, prepare, configure or reset every source -> 202 ``{"workflow_id"}``."""
    if name not in TRANSITION_KINDS:
        raise NotFound(f"no transition {name!r}; use one of {', '.join(TRANSITION_KINDS)}")
    if _json_body():
        raise Invalid("transitions take no fields")
    return _accepted(launching.launch(WorkflowKind(name), actor=auth.actor()))


@bp.post("/ecc-servers/<name>/transitions/<operation>")
def server_step(name: str, operation: str):
    """Move one ECC server one step: ``{"force"}`` (during a run) -> 202 ``{"workflow_id"}``."""
    if operation not in SERVER_OPERATIONS:
        raise NotFound(f"no operation {operation!r}; use one of {', '.join(SERVER_OPERATIONS)}")
    body = _json_body()
    if set(body) - {"force"}:
        raise Invalid(f"unknown field(s): {', '.join(sorted(map(str, set(body) - {'force'})))}")
    return _accepted(launching.launch(WorkflowKind.SERVER_STEP, actor=auth.actor(), server=name,
                                      operation=operation, force=body.get("force", False)))


@bp.post("/workflows/<int(max=2147483647):workflow_id>/replay")
def replay_workflow(workflow_id: int):
    """Replay a failed or aborted workflow's unsuccessful steps -> 202 ``{"workflow_id",
    "replayed_steps", "steps", "stages", "then", "left_alone"}``; ``?dry_run=1``: 200, the
    same answer, and nothing done."""
    if _json_body():
        raise Invalid("replay takes no fields")
    dry_run = request.args.get("dry_run", "0")
    if set(request.args) - {"dry_run"} or dry_run not in ("0", "1"):
        raise Invalid("replay takes only ?dry_run=1 (or 0)")
    if dry_run == "1":
        return jsonify(replay.preview(workflow_id))
    return jsonify(replay.replay(workflow_id, actor=auth.actor())), 202


@bp.post("/workflows/<int(max=2147483647):workflow_id>/abort")
def abort_workflow(workflow_id: int):
    """Abort an active workflow -> 200 ``{"workflow_id", "running", "not_started"}``."""
    if _json_body():
        raise Invalid("abort takes no fields")
    return jsonify(abort.abort(workflow_id, actor=auth.actor()))


@bp.get("/workflows/<int(max=2147483647):workflow_id>")
def workflow(workflow_id: int):
    """The progress read of one workflow, with who did what to it."""
    return jsonify(dict(progress.read(workflow_id), actions=accounts.actions_of(workflow_id)))


@bp.get("/configs")
def config_listing():
    """The configs every server offers, each server's chosen config and what it offers."""
    return jsonify(configs.listing())


@bp.post("/configs/read")
def read_configs():
    """Ask every ECC server GetConfigIDs now -> the listing."""
    if _json_body():
        raise Invalid("reading the configs takes no fields")
    configs.read_offered()
    accounts.note(auth.actor(), "read_configs")
    return jsonify(configs.listing())


@bp.post("/configs/choose")
def choose_config():
    """``{"config", "server"}`` (server optional: every server) -> the listing."""
    body = _json_body()
    unknown = sorted(map(str, set(body) - {"config", "server"}))
    if unknown:
        raise Invalid(f"unknown field(s): {', '.join(unknown)}")
    return jsonify(configs.choose(body.get("config"), body.get("server"), actor=auth.actor()))


@bp.get("/alarms")
def alarm_listing():
    """The active alarms and the history."""
    return jsonify(alarms.listing())


@bp.post("/alarms/<int(max=2147483647):alarm_id>/ack")
def acknowledge_alarm(alarm_id: int):
    """Acknowledge an alarm (operators; audited) -> the alarm."""
    if _json_body():
        raise Invalid("acknowledging takes no fields")
    return jsonify(alarms.acknowledge(alarm_id, actor=auth.actor()))


def _since() -> datetime:
    # ?since= an ISO time (default: an hour ago); nothing else.
    unknown = sorted(set(request.args) - {"since"})
    if unknown:
        raise Invalid(f"unknown parameter(s): {', '.join(unknown)[:200]}; use since")
    since = request.args.get("since")
    try:
        start = datetime.fromisoformat(since) if since else utcnow() - timedelta(hours=1)
    except ValueError:
        raise Invalid("since must be an ISO time like 2026-11-23T03:00:00+00:00") from None
    return start.replace(tzinfo=timezone.utc) if start.tzinfo is None else start


@bp.get("/health/routers")
def router_health():
    """Each data router's samples (write rate, files, bytes, free disk) ``?since=`` an ISO
    time (default: the last hour)."""
    return jsonify(health.series(_since()))


@bp.get("/health/ecc")
def ecc_health():
    """Each ECC server's reachability and state changes ``?since=`` an ISO time (default:
    the last hour), starting with the state that held then."""
    return jsonify(health.ecc_series(_since()))


@bp.get("/openapi.json")
def openapi_json():
    """The OpenAPI 3 description of this API."""
    return jsonify(openapi.description())


@bp.get("/status")
def status():
    """Overall DAQ state, current run, active workflow, servers and sources."""
    return jsonify(daq_status.status())
