"""Reading a workflow's progress and the DAQ's status, cheaply enough to poll every second.

A progress read costs one SQL query and one Redis round trip (an MGET of every
result key), whatever the number of sources. The database says what is done;
Redis adds the live part (a transition's elapsed and expected seconds).
"""
from __future__ import annotations

from datetime import datetime

from redis.exceptions import RedisError
from sqlmodel import select

from models import (
    DaqNode,
    DataRouter,
    DataSource,
    ECCServer,
    Experiment,
    Run,
    RunFiles,
    Stage,
    Step,
    StepState,
    Workflow,
    WorkflowState,
    session,
)
from models.db import utcnow
from models.workflow import ACTIVE_STATES
from pipelines.celery_app import app
from pipelines.ecc import state_name
from pipelines.workflows import NotFound, current_run, daq_state

FINISHED = (StepState.SUCCEEDED.value, StepState.FAILED.value, StepState.LOST.value)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def fetch_results(task_ids: list[str], client=None) -> tuple[dict[str, dict], str | None]:
    """Celery result metas for task ids in one MGET; (metas, error if Redis is away)."""
    if not task_ids:
        return {}, None
    backend = app.backend
    client = client or backend.client
    try:
        values = client.mget([backend.get_key_for_task(tid) for tid in task_ids])
    except (RedisError, OSError) as exc:
        return {}, f"live progress is unavailable: Redis does not answer ({exc})"
    metas = {tid: backend.decode(raw) for tid, raw in zip(task_ids, values) if raw is not None}
    return metas, None


def _callback_state(meta: dict | None, recorded_state: str) -> str:
    # Results of earlier workflows are deleted from Redis (see workflows.launch); a
    # callback whose stage or workflow succeeded has run, whatever Redis still says.
    if meta is not None:
        return meta.get("status", "PENDING")
    return "SUCCESS" if recorded_state == WorkflowState.SUCCEEDED.value else "PENDING"


def _step_view(step: Step, meta: dict | None, now: datetime) -> dict:
    status = (meta or {}).get("status")
    state = step.state
    if state == StepState.PENDING.value and status in ("STARTED", "PROGRESS"):
        state = StepState.RUNNING.value  # the worker is faster than its database write
    expected = step.expected_seconds
    elapsed = step.duration
    if status == "PROGRESS" and isinstance(meta.get("result"), dict):
        expected = meta["result"].get("expected") or expected
        elapsed = meta["result"].get("elapsed")
    if state == StepState.RUNNING.value and step.started_at:
        elapsed = max(elapsed or 0.0, (now - step.started_at).total_seconds())
    if state in FINISHED:
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
        "started_at": _iso(step.started_at), "finished_at": _iso(step.finished_at),
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
    ids += [tries[-1].task_id for members in attempts.values() for tries in members.values()]
    metas, live_error = fetch_results([tid for tid in ids if tid], redis_client)
    now = utcnow()
    stage_views = []
    for stage in stages.values():
        members = attempts.get(stage.id, {})
        steps = [_step_view(tries[-1], metas.get(tries[-1].task_id), now) for tries in members.values()]
        history = [_step_view(st, None, now) for tries in members.values() for st in tries[:-1]]
        done = sum(1 for st in steps if st["state"] == StepState.SUCCEEDED.value)
        callback = _callback_state(metas.get(stage.callback_task_id), stage.state)
        stage_views.append({
            "id": stage.id, "order": stage.order, "name": stage.name,
            "operation": stage.operation, "state": stage.state, "error": stage.error,
            "group_id": stage.group_id, "done": done, "total": len(steps),
            "failed": sum(1 for st in steps if st["state"] in (StepState.FAILED.value,
                                                                 StepState.LOST.value)),
            "callback_task_id": stage.callback_task_id, "callback_state": callback,
            "steps": steps, "earlier_attempts": history,
        })
    total = sum(st["total"] for st in stage_views)
    return {
        "id": workflow.id, "kind": workflow.kind, "state": workflow.state,
        "active": workflow.state in ACTIVE_STATES, "error": workflow.error,
        "params": workflow.params, "run_id": workflow.run_id,
        "created_at": _iso(workflow.created_at), "finished_at": _iso(workflow.finished_at),
        "done": sum(st["done"] for st in stage_views), "total": total,
        "callback_state": _callback_state(metas.get(workflow.callback_task_id), workflow.state),
        "stages": stage_views, "live": live_error is None, "live_error": live_error,
        "files": run_files(workflow.run_id) if workflow.kind == "stop_run" else None,
    }


def run_files(run_id: int | None) -> dict | None:
    """What a stop did with its run's files: per router (data) and per ECC server (configs)."""
    if run_id is None:
        return None
    with session() as s:
        run = s.get(Run, run_id)
        rows = s.exec(select(RunFiles).where(RunFiles.run_id == run_id)
                      .order_by(RunFiles.kind, RunFiles.target)).all()
    views = [{"kind": r.kind, "target": r.target, "node": r.node, "folder": r.folder,
              "files": r.files, "bytes": r.bytes, "recorded_at": _iso(r.recorded_at)} for r in rows]
    return {
        "run_number": run.number if run else None,
        "organized_at": _iso(run.files_organized_at) if run else None,
        "data": [v for v in views if v["kind"] == "data"],
        "configs": [v for v in views if v["kind"] == "configs"],
    }


def status() -> dict:
    """The DAQ at a glance: experiment, current run, overall state, sources, active workflow."""
    with session() as s:
        experiment = s.exec(select(Experiment).where(Experiment.active == True)).first()  # noqa: E712
        server_rows = s.exec(select(ECCServer, DaqNode)
                             .join(DaqNode, ECCServer.node_id == DaqNode.id, isouter=True)
                             .order_by(ECCServer.name)).all()
        sources = s.exec(select(DataSource).order_by(DataSource.name)).all()
        run = current_run(s)
        active = s.exec(select(Workflow).where(Workflow.state.in_(ACTIVE_STATES))
                        .order_by(Workflow.id.desc())).first()
        last = s.exec(select(Workflow).order_by(Workflow.id.desc())).first()
        routers = s.exec(select(DataRouter, DaqNode)
                         .join(DaqNode, DataRouter.node_id == DaqNode.id, isouter=True)
                         .order_by(DataRouter.name)).all()
    servers = [srv for srv, _ in server_rows]
    by_id = {srv.id: srv for srv in servers}
    now = utcnow()
    return {
        "experiment": experiment.name if experiment else None,
        "next_run_number": experiment.last_run_number + 1 if experiment else None,
        "state": daq_state([srv.state for srv in servers]),
        "run": None if run is None else {
            "number": run.number, "title": run.title, "run_class": run.run_class,
            "config": run.config_name, "started_at": _iso(run.started_at),
            "running_seconds": round((now - run.started_at).total_seconds(), 1),
        },
        "active_workflow": active.id if active else None,
        "last_workflow": last.id if last else None,
        "servers": [{"name": srv.name, "url": srv.url, "state": state_name(srv.state),
                     "online": srv.online, "last_seen_at": _iso(srv.last_seen_at),
                     "error": srv.last_error, "node": node.name if node else None,
                     "process_running": srv.process_running,
                     "process_checked_at": _iso(srv.process_checked_at),
                     "process_error": srv.process_error} for srv, node in server_rows],
        "sources": [{"name": src.name, "ecc_server": by_id[src.ecc_server_id].name,
                     "state": state_name(by_id[src.ecc_server_id].state),
                     "online": by_id[src.ecc_server_id].online,
                     "last_seen_at": _iso(by_id[src.ecc_server_id].last_seen_at),
                     "error": by_id[src.ecc_server_id].last_error} for src in sources],
        "routers": [{"name": r.name, "node": node.name if node else None,
                     "staging_dir": r.staging_dir, "online": r.online, "clean": r.clean,
                     "graw_files": r.graw_files, "checked_at": _iso(r.checked_at),
                     "error": r.last_error} for r, node in routers],
    }

