"""Reading a workflow's progress, cheaply enough to poll every second.

A progress read costs one SQL query and one Redis round trip (an MGET of every
result key), whatever the number of sources. The database says what is done;
Redis adds the live part (a transition's elapsed and expected seconds).
"""
from __future__ import annotations

from datetime import datetime

from sqlmodel import select

from models import Run, RunFiles, Stage, Step, StepState, Workflow, WorkflowState, session
from models.columns import utcnow
from models.vocabulary import (
    ACTIVE_STATES,
    ENDED_STEP_STATES,
    UNSUCCESSFUL_STEP_STATES,
    FilesKind,
    WorkflowKind,
)
from pipelines.orchestration import results
from pipelines.runcontrol.errors import NotFound


def iso(value: datetime | None) -> str | None:
    """A timestamp as ISO 8601 text for JSON, or None."""
    return value.isoformat() if value else None


def _callback_state(meta: dict | None, recorded_state: str) -> str:
    # Results of earlier workflows are deleted from Redis (see launching.launch); a
    # callback whose stage or workflow succeeded has run, whatever Redis still says.
    if meta is not None:
        return meta.get("status", "PENDING")
    return "SUCCESS" if recorded_state == WorkflowState.SUCCEEDED.value else "PENDING"


def _step_view(step: Step, meta: dict | None, now: datetime) -> dict:
    status = (meta or {}).get("status")
    state = step.state
    if state in ENDED_STEP_STATES:
        # Steps store no result in Redis (tasks.StepTask): an ended step's Celery state is
        # its record's, and a PROGRESS it left there says nothing any more.
        meta = None
        status = "SUCCESS" if state == StepState.SUCCEEDED.value else "FAILURE"
    elif state == StepState.PENDING.value and status in ("STARTED", "PROGRESS"):
        state = StepState.RUNNING.value  # the worker is faster than its database write
    elif status is None and state == StepState.RUNNING.value:
        status = "STARTED"  # its row says so; the step stores no STARTED
    expected = step.expected_seconds
    elapsed = step.duration
    if status == "PROGRESS" and isinstance(meta.get("result"), dict):
        expected = meta["result"].get("expected") or expected
        elapsed = meta["result"].get("elapsed")
    if state == StepState.RUNNING.value and step.started_at:
        elapsed = max(elapsed or 0.0, (now - step.started_at).total_seconds())
    if state == StepState.ABORTED.value:
        # Cut loose part-way: the bar stops where the step was, never full.
        progress = min((elapsed or 0.0) / expected, 0.99) if expected else 0.0
    elif state in ENDED_STEP_STATES:
        progress = 1.0
    elif state == StepState.RUNNING.value and expected:
        progress = min((elapsed or 0.0) / expected, 0.99)
    else:
        progress = 0.0
    return {
        "id": step.id, "target": step.target, "operation": step.operation,
        "attempt": step.attempt, "state": state, "task_id": step.task_id,
        "task_state": status or "PENDING", "progress": round(progress, 3),
        "elapsed": round(elapsed, 3) if elapsed is not None else None,
        "expected": expected, "duration": step.duration, "error": step.error,
        "note": step.note,
        "started_at": iso(step.started_at), "finished_at": iso(step.finished_at),
    }


def read(workflow_id: int, redis_client=None) -> dict:
    """A workflow's whole state: steps, stage groups and callbacks, overall state."""
    with session() as s:
        rows = s.exec(
            select(Workflow, Stage, Step)
            .join(Stage, Stage.workflow_id == Workflow.id, isouter=True)
            .join(Step, Step.stage_id == Stage.id, isouter=True)
            .where(Workflow.id == workflow_id)
            .order_by(Stage.order, Step.target, Step.attempt)
        ).all()
    if not rows:
        raise NotFound(f"no workflow {workflow_id}")
    workflow = rows[0][0]
    stages: dict[int, Stage] = {}
    attempts: dict[int, dict[str, list[Step]]] = {}
    for _, stage, step in rows:
        if stage is not None:
            stages[stage.id] = stage
            if step is not None:
                attempts.setdefault(stage.id, {}).setdefault(step.target, []).append(step)
    ids = [workflow.callback_task_id] + [st.callback_task_id for st in stages.values()]
    # Only the steps still going have anything live in Redis: an ended one is read from its
    # row (see _step_view), so a finished 1024-source workflow's poll asks for 5 keys, not 1029.
    ids += [tries[-1].task_id for members in attempts.values() for tries in members.values()
            if tries[-1].state not in ENDED_STEP_STATES]
    metas, live_error = results.fetch([tid for tid in ids if tid], redis_client)
    now = utcnow()
    stage_views = []
    for stage in stages.values():
        members = attempts.get(stage.id, {})
        steps = [_step_view(tries[-1], metas.get(tries[-1].task_id), now)
                 for tries in members.values()]
        history = [_step_view(st, None, now) for tries in members.values() for st in tries[:-1]]
        done = sum(1 for st in steps if st["state"] == StepState.SUCCEEDED.value)
        callback = _callback_state(metas.get(stage.callback_task_id), stage.state)
        stage_views.append({
            "id": stage.id, "order": stage.order, "name": stage.name,
            "operation": stage.operation, "state": stage.state, "error": stage.error,
            "group_id": stage.group_id, "done": done, "total": len(steps),
            "failed": sum(1 for st in steps if st["state"] in UNSUCCESSFUL_STEP_STATES),
            "callback_task_id": stage.callback_task_id, "callback_state": callback,
            "steps": steps, "earlier_attempts": history,
        })
    total = sum(st["total"] for st in stage_views)
    return {
        "id": workflow.id, "kind": workflow.kind, "state": workflow.state,
        "active": workflow.state in ACTIVE_STATES, "error": workflow.error,
        "params": workflow.params, "run_id": workflow.run_id,
        "created_at": iso(workflow.created_at), "finished_at": iso(workflow.finished_at),
        "done": sum(st["done"] for st in stage_views), "total": total,
        "callback_state": _callback_state(metas.get(workflow.callback_task_id), workflow.state),
        "stages": stage_views, "live": live_error is None, "live_error": live_error,
        "files": run_files(workflow.run_id) if workflow.kind == WorkflowKind.STOP_RUN else None,
    }


def run_files(run_id: int | None) -> dict | None:
    """What a stop did with its run's files: per router (data) and per ECC server (configs)."""
    if run_id is None:
        return None
    with session() as s:  # one query: the run, and its files if any
        rows = s.exec(select(Run, RunFiles)
                      .join(RunFiles, RunFiles.run_id == Run.id, isouter=True)
                      .where(Run.id == run_id)
                      .order_by(RunFiles.kind, RunFiles.target)).all()
    run = rows[0][0] if rows else None
    views = [{"kind": r.kind, "target": r.target, "node": r.node, "folder": r.folder,
              "files": r.files, "bytes": r.bytes, "recorded_at": iso(r.recorded_at)}
             for _, r in rows if r is not None]
    return {
        "run_number": run.number if run else None,
        "organized_at": iso(run.files_organized_at) if run else None,
        "data": [v for v in views if v["kind"] == FilesKind.DATA],
        "configs": [v for v in views if v["kind"] == FilesKind.CONFIGS],
    }
