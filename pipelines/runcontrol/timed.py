"""Unattended data taking: a run's planned length, the stop daqflow runs at it, and the
automatic restart after it.

Every timer is Celery's. The start's final callback sends ``daqflow.run.limit`` with an
ETA at the planned end; beat's ``daqflow.watch.runs`` looks every DAQFLOW_WATCH_ECC_SECONDS
as the net under it (an ETA message held by a worker killed with SIGKILL comes back only
after the broker's visibility timeout), and it alone watches a byte limit, from the
routers' health samples. Both end in ``reach_limit``, which acts on the run it names
only while that run is the one going, and once: a duplicate, late or redelivered timer
stops nothing else. The stop is a normal stop workflow, audited as ``daqflow for <who
started the run>``; once it succeeded, ``restart`` starts the next run with the same
settings. If either cannot be done, the chain ends, the run says why, and an alarm
(``automation_failed``) wakes the shift; nothing is retried blindly.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, update
from sqlmodel import select

from models import RouterSample, Run, Workflow, session
from models.columns import utcnow
from models.vocabulary import RunMoment, WorkflowKind, WorkflowState
from pipelines.orchestration.app import app
from pipelines.runcontrol import accounts, launching, runfields
from pipelines.runcontrol.errors import Invalid, NotFound, Refused, Unavailable
from pipelines.runcontrol.planning import current_run

# Who acts at a limit, on behalf of the operator who started the run.
ACTOR = "daqflow"
# A timer may fire a few milliseconds before its ETA by this host's clock: it still counts.
EARLY_SECONDS = 0.25


def bytes_written(s, run: Run) -> int | None:
    """What the data routers hold of a run, as their latest samples since its start say (a
    start needs clean staging directories, so all of it is this run's); None: no sample."""
    latest = s.exec(select(RouterSample.router, func.max(RouterSample.at))
                    .where(RouterSample.at >= run.started_at)
                    .group_by(RouterSample.router)).all()
    if not latest:
        return None
    rows = s.exec(select(RouterSample.router, RouterSample.at, RouterSample.bytes).where(
        RouterSample.at >= run.started_at)).all()
    newest = dict(latest)
    return sum(b or 0 for router, at, b in rows if at == newest[router])


def ends_at(run: Run) -> datetime | None:
    """When a run's planned duration ends (None: no duration)."""
    if run.planned_seconds is None or run.started_at is None:
        return None
    return run.started_at + timedelta(seconds=run.planned_seconds)


def _reached(s, run: Run, now: datetime) -> str | None:
    # Why the run is at its limit now, or None.
    end = ends_at(run)
    if end is not None and now >= end - timedelta(seconds=EARLY_SECONDS):
        return f"its planned {_hms(run.planned_seconds)}"
    if run.planned_bytes is not None:
        written = bytes_written(s, run)
        if written is not None and written >= run.planned_bytes:
            return f"{written / 1e9:.3f} GB written (planned {run.planned_bytes / 1e9:.3f} GB)"
    return None


def _hms(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def schedule(run_id: int, at: datetime | None) -> None:
    """Send the run's timer: ``daqflow.run.limit`` at ``at`` (it checks again then)."""
    if at is not None:
        app.send_task("daqflow.run.limit", args=[run_id], eta=at)


def reach_limit(run_id: int) -> dict:
    """Stop run ``run_id`` if it is the run going, at its limit, and not stopped at it yet."""
    now = utcnow()
    with session() as s:
        run = current_run(s)
        if run is None or run.id != run_id:
            return {"run": run_id, "stopped": False, "why": "not the run going"}
        why = _reached(s, run, now)
        if why is None:
            return {"run": run_id, "stopped": False, "why": "limit not reached"}
        claimed = s.exec(update(Run).where(Run.id == run_id, Run.limit_reached_at == None)  # noqa: E711
                         .values(limit_reached_at=now)).rowcount
        if not claimed:
            return {"run": run_id, "stopped": False, "why": "stopped at its limit already"}
        number, behalf, asked = run.number, _behalf(s, run), _asked_at_stop(s)
    # The stop's own fields as the stop form would offer them: the previous run's.
    fields = {name: value for name, value in runfields.previous_values().items()
              if name in asked}
    try:
        workflow_id = launching.launch(
            WorkflowKind.STOP_RUN, actor=f"{ACTOR} for {behalf}"[:80], fields=fields,
            note=f"stopped by daqflow at {why}"[:4000], limit_stop=True)
    except (Invalid, Refused, Unavailable, NotFound) as exc:
        _chain_ended(run_id, f"could not stop run {number} at {why}: {exc}")
        return {"run": run_id, "stopped": False, "why": str(exc)}
    return {"run": run_id, "stopped": True, "workflow": workflow_id}


def _asked_at_stop(s) -> set[str]:
    return {f.name for f in runfields.definitions(s) if f.asked_at == RunMoment.STOP}


def _behalf(s, run: Run) -> str:
    # The operator the chain acts for: who started its first run.
    start = _start_workflow(s, run)
    return (start.params.get("series") or {}).get("behalf") or run.started_by or "unknown"


def _start_workflow(s, run: Run) -> Workflow | None:
    return s.exec(select(Workflow).where(Workflow.run_id == run.id,
                                         Workflow.kind == WorkflowKind.START_RUN,
                                         Workflow.state == WorkflowState.SUCCEEDED)).first()


def _chain_ended(run_id: int, reason: str) -> None:
    with session() as s:
        run = s.get(Run, run_id)
        run.automation_error = reason[:2000]
        accounts.record(s, ACTOR, "automation_ended", run_id=run_id, number=run.number,
                        reason=reason[:500])


def sweep(now: datetime | None = None) -> dict | None:
    """Beat: the run going, stopped if it is at its limit (duration or bytes)."""
    with session() as s:
        run = current_run(s)
        if run is None or run.limit_reached_at is not None or run.automation_error:
            return None
        if _reached(s, run, now or utcnow()) is None:
            return None
        run_id = run.id
    return reach_limit(run_id)


def after_workflow(workflow_id: int) -> dict:
    """After a workflow's final callback: a started run's timer, or a stopped one's restart."""
    with session() as s:
        workflow = s.get(Workflow, workflow_id)
        run = s.get(Run, workflow.run_id) if workflow and workflow.run_id else None
        if run is None:
            return {}
        if workflow.kind == WorkflowKind.START_RUN:
            at, run_id = ends_at(run), run.id
        elif workflow.params.get("limit_stop") and run.auto_restart:
            app.send_task("daqflow.run.restart", args=[run.id])
            return {"restart": run.id}
        else:
            return {}
    schedule(run_id, at)
    return {"timer": at.isoformat() if at else None}


def restart(run_id: int) -> dict:
    """Start the next run of a chain once ``run_id`` stopped at its limit: same title with a
    counter, class, comment, start fields, planned length and automatic restart; once."""
    now = utcnow()
    with session() as s:
        run = s.get(Run, run_id)
        if run is None or run.stopped_at is None or not run.auto_restart:
            return {"started": False, "why": "no restart asked"}
        claimed = s.exec(update(Run).where(Run.id == run_id, Run.restarted_at == None)  # noqa: E711
                         .values(restarted_at=now)).rowcount
        if not claimed:
            return {"started": False, "why": "restarted already"}
        start = _start_workflow(s, run)
        params = start.params if start else {}
        series = params.get("series") or {}
        base = series.get("title", run.title)
        index = series.get("index", 1) + 1
        behalf = series.get("behalf") or run.started_by or "unknown"
        request = dict(title=f"{base[:190]} ({index})", run_class=run.run_class,
                       comment=run.comment, fields=params.get("fields") or {},
                       duration_seconds=run.planned_seconds, max_bytes=run.planned_bytes,
                       auto_restart=True,
                       series={"title": base, "index": index, "behalf": behalf})
        number = run.number
    try:
        workflow_id = launching.launch(WorkflowKind.START_RUN, actor=f"{ACTOR} for {behalf}"[:80],
                                       **request)
    except (Invalid, Refused, Unavailable, NotFound) as exc:
        _chain_ended(run_id, f"could not start the run after run {number}: {exc}")
        return {"started": False, "why": str(exc)}
    return {"started": True, "workflow": workflow_id}


def set_limits(number: int, changes: dict, actor: str | None = None) -> dict:
    """Change the planned length or automatic restart of run ``number``, which must be the
    run going (audited): ``duration_seconds``, ``max_bytes`` (None cancels one),
    ``auto_restart``. A new duration gets a new timer; the old one then finds the limit
    not reached and does nothing."""
    unknown = set(changes) - {"duration_seconds", "max_bytes", "auto_restart"}
    if unknown or not changes:
        raise Invalid("change duration_seconds, max_bytes (null cancels) or auto_restart")
    checked = launching.check_limits(changes.get("duration_seconds"), changes.get("max_bytes"))
    if "auto_restart" in changes and not isinstance(changes["auto_restart"], bool):
        raise Invalid("auto_restart must be true or false")
    with session() as s:
        run = current_run(s)
        if run is None or run.number != number:
            raise Refused(f"run {number} is not going: only the run going has a timer")
        if run.limit_reached_at is not None:
            raise Refused(f"run {number} is being stopped at its limit already")
        if "duration_seconds" in changes:
            run.planned_seconds = checked.get("duration_seconds")
        if "max_bytes" in changes:
            run.planned_bytes = checked.get("max_bytes")
        if "auto_restart" in changes:
            run.auto_restart = changes["auto_restart"]
        if run.auto_restart and run.planned_seconds is None and run.planned_bytes is None:
            raise Invalid("auto_restart needs a planned length; cancel it first")
        accounts.record(s, actor, "run_limits", run_id=run.id, number=number, **changes)
        view_now, run_id, at = view(s, run), run.id, ends_at(run)
    schedule(run_id, at)
    return view_now


def view(s, run: Run, now: datetime | None = None) -> dict:
    """A run's plan as the page, the API and the CLI show it."""
    end = ends_at(run)
    now = now or utcnow()
    return {"planned_seconds": run.planned_seconds, "planned_bytes": run.planned_bytes,
            "ends_at": end.isoformat() if end else None,
            "stops_in_seconds": max(0.0, round((end - now).total_seconds(), 1))
            if end and run.stopped_at is None else None,
            "bytes_written": bytes_written(s, run) if run.planned_bytes else None,
            "auto_restart": run.auto_restart,
            "limit_reached_at": run.limit_reached_at.isoformat()
            if run.limit_reached_at else None,
            "automation_error": run.automation_error}
