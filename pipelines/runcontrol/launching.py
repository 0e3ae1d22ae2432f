"""Launching a workflow: take the lock, plan, write the record with every Celery id, dispatch.

The Workflow, Stage and Step rows are written, with every Celery id, before
anything is sent; a refused request writes nothing and releases the lock.
"""
from __future__ import annotations

import time
from uuid import uuid4

from kombu.exceptions import OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlmodel import insert, select

from models import (
    ECCServer,
    RunPlan,
    Stage,
    Step,
    StepState,
    Workflow,
    WorkflowState,
    session,
)
from models.vocabulary import (
    ACTIVE_STATES,
    SERVER_OPERATIONS,
    PlanState,
    RunClass,
    RunMoment,
    WorkflowKind,
)
from pipelines.daq.nodes import checks
from pipelines.orchestration import canvases, results
from pipelines.runcontrol import accounts, lock, runfields
from pipelines.runcontrol.errors import Invalid, Refused, Unavailable
from pipelines.runcontrol.expected import FILES_EXPECTED_SECONDS, expected_durations
from pipelines.runcontrol.planning import plan
from pipelines.runcontrol.records import steps as step_records
from pipelines.runcontrol.records import workflows as workflow_records
from pipelines.runcontrol.texts import operator_text

# A run's title: a line of a run sheet; the comment at its start: a few lines.
TITLE_MAX = 200
COMMENT_MAX = 1000
NOTE_MAX = 4000


def check_run_class(run_class: object) -> str:
    """``run_class`` if it is one of the run classes, else Invalid listing them."""
    if not isinstance(run_class, str) or run_class not in tuple(RunClass):
        raise Invalid(f"run_class must be one of {', '.join(RunClass)}")
    return run_class

# A workflow is recorded as ended just before its lock is released: an operator who presses
# Stop the moment the run shows started waits this long for the lock instead of a refusal.
LOCK_HANDOVER_SECONDS = 3.0


def take_lock() -> str:
    """The run-control lock for one workflow, or Refused / Unavailable; returns its token.

    It expires on its own after the longest a workflow can take, should the
    process that would release it die.
    """
    with session() as s:
        deadlines = s.exec(select(ECCServer.transition_timeout)).all()
    seconds = 4 * (max(deadlines, default=120.0) + 30) + 600  # transitions, then files
    handover = time.monotonic() + LOCK_HANDOVER_SECONDS
    while True:
        try:
            return lock.acquire(seconds)
        except lock.Busy as exc:
            if time.monotonic() > handover or not _holder_has_ended():
                raise Refused(str(exc)) from None
            time.sleep(0.02)
        except (RedisConnectionError, OSError) as exc:
            raise Unavailable(f"Redis is unreachable ({exc}); nothing was started") from exc


def _holder_has_ended() -> bool:
    """Whether the lock's holder is a workflow already recorded as ended (about to release)."""
    token = lock.holder()
    if token is None:
        return True  # released meanwhile: try again
    with session() as s:
        state = s.exec(select(Workflow.state).where(Workflow.lock_token == token)).first()
    return state is not None and state not in ACTIVE_STATES


# A planned length longer than a week is a typo, not a plan.
MAX_SECONDS = 7 * 86400.0
MAX_BYTES = 10**15


def check_limits(duration_seconds: object = None, max_bytes: object = None,
                 auto_restart: object = False) -> dict:
    """A start's planned length and automatic restart, checked (Invalid names the problem);
    only what is set."""
    out: dict = {}
    if duration_seconds is not None:
        if isinstance(duration_seconds, bool) or not isinstance(duration_seconds, (int, float)) \
                or not 1 <= duration_seconds <= MAX_SECONDS:
            raise Invalid(f"duration_seconds must be a number of seconds from 1 to "
                          f"{MAX_SECONDS:.0f}")
        out["duration_seconds"] = float(duration_seconds)
    if max_bytes is not None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) \
                or not 1 <= max_bytes <= MAX_BYTES:
            raise Invalid(f"max_bytes must be a whole number of bytes from 1 to {MAX_BYTES}")
        out["max_bytes"] = max_bytes
    if not isinstance(auto_restart, bool):
        raise Invalid("auto_restart must be true or false")
    if auto_restart:
        if not out:
            raise Invalid("auto_restart needs a planned length (duration_seconds or "
                          "max_bytes): without one the run never ends to restart")
        out["auto_restart"] = True
    return out


def run_sheet(kind: str, comment: str = "", note: str = "", fields: dict | None = None,
              duration_seconds: float | None = None, max_bytes: int | None = None,
              auto_restart: bool = False) -> dict:
    """What a start (comment, fields asked at start, planned length and automatic restart)
    or a stop (note, fields asked at stop) adds to the run's record, checked; Invalid for
    anything else or a bad value."""
    limits = check_limits(duration_seconds, max_bytes, auto_restart)
    if kind == WorkflowKind.START_RUN:
        if note:
            raise Invalid("a note is written at or after the stop, not at the start")
        sheet = {"comment": operator_text("comment", comment, COMMENT_MAX), **limits}
        moment = RunMoment.START
    elif limits:
        raise Invalid("a planned length and automatic restart are given at the start")
    elif kind == WorkflowKind.STOP_RUN:
        if comment:
            raise Invalid("a comment is given at the start; at the stop, write a note")
        sheet = {"note": operator_text("note", note, NOTE_MAX)}
        moment = RunMoment.STOP
    else:
        if comment or note or fields:
            raise Invalid(f"{kind} takes no comment, note or fields")
        return {}
    with session() as s:
        values = runfields.check_values(runfields.definitions(s), fields, moment)
    sheet["fields"] = {name: value for name, value in values.items() if value is not None}
    return sheet


def check_server_step(kind: str, server: object, operation: object, force: object) -> dict:
    """A server step's ``server``, ``operation`` and ``force``, checked (Invalid if bad);
    {} for any other workflow, which takes none of them."""
    if kind != WorkflowKind.SERVER_STEP:
        if server is not None or operation is not None or force:
            raise Invalid(f"{kind} moves every server; name no server or operation")
        return {}
    if not isinstance(server, str) or not server:
        raise Invalid("name the ECC server to move")
    if operation not in SERVER_OPERATIONS:
        raise Invalid(f"operation must be one of {', '.join(SERVER_OPERATIONS)}")
    if not isinstance(force, bool):
        raise Invalid("force must be true or false")
    return {"server": server, "operation": operation, "force": force}


def create(kind: str, title: str = "", run_class: str = RunClass.TEST, actor: str | None = None,
           server: str | None = None, operation: str | None = None, force: bool = False,
           series: dict | None = None, limit_stop: bool = False, run_plan: dict | None = None,
           **sheet) -> int:
    """Take the lock, plan a workflow, write its rows with all Celery ids; its id.

    Raises Invalid for a title, run class or run sheet (``comment``, ``note``,
    ``fields``: see ``run_sheet``) the run's record could not hold, and Refused when
    a rule forbids it: either way nothing is written (and the lock is released). A
    start also checks every data router's staging directory first, over SSH, outside
    any session. ``actor`` (default: the command line's user) goes in the audit. A server
    step (WorkflowKind.SERVER_STEP) names its ``server`` and ``operation``; ``force``
    allows it during a run. ``series`` (a start) and ``limit_stop`` (a stop) mark the
    workflows daqflow launches itself for a run's planned length (``timed``),
    ``run_plan`` those of a run plan (``plans``); while a plan runs, a start not its own is refused.
    """
    title = operator_text("title", title, TITLE_MAX)
    run_class = check_run_class(run_class)
    checked = run_sheet(kind, **sheet)
    if series and kind == WorkflowKind.START_RUN:
        checked["series"] = series
    if limit_stop and kind == WorkflowKind.STOP_RUN:
        checked["limit_stop"] = True
    if run_plan:
        checked["plan"] = run_plan
    elif kind == WorkflowKind.START_RUN:
        with session() as s:
            _refuse_during_a_plan(s)
    step = check_server_step(kind, server, operation, force)
    token = take_lock()
    try:
        return _create(kind, title, run_class, checked, step, token, actor)
    except BaseException:
        lock.release(token)
        raise


def _create(kind: str, title: str, run_class: str, sheet: dict, step: dict, token: str,
            actor: str | None) -> int:
    if kind == WorkflowKind.START_RUN:
        with session() as s:
            plan(s, kind, title=title, run_class=run_class)  # the cheap rules first
        dirty = checks.problems()
        if dirty:
            raise Refused("a run may not start on top of an earlier run's files: "
                          + "; ".join(dirty))
    with session() as s:
        planned = plan(s, kind, title=title, run_class=run_class, **step)
        planned.params.update(sheet)
        workflow = Workflow(kind=kind, params=planned.params, callback_task_id=str(uuid4()),
                            run_id=planned.run_id, lock_token=token)
        s.add(workflow)
        s.flush()
        accounts.record(s, actor, kind, workflow.id, **{
            key: planned.params[key]
            for key in ("title", "run_class", "run_number", "comment", "note", "fields",
                        "server", "operation", "force", "duration_seconds", "max_bytes",
                        "auto_restart")
            if planned.params.get(key)})
        for order, stage_plan in enumerate(planned.stages):
            stage = Stage(workflow_id=workflow.id, order=order, name=stage_plan.name,
                          operation=stage_plan.operation, group_id=str(uuid4()),
                          callback_task_id=str(uuid4()))
            s.add(stage)
            s.flush()
            history = expected_durations(s, stage_plan.operation,
                                         [name for name, _, _ in stage_plan.members])
            files = stage_plan.operation in canvases.STEP_TASKS
            default = {} if files else planned.expected_seconds
            # One INSERT of plain rows: an ORM object per step was most of the web's
            # time to launch a 1024-source start, on the path to its first stage.
            rows = [{"stage_id": stage.id, "target": target, "operation": operation,
                     "target_state": None if target_state is None else int(target_state),
                     "task_id": str(uuid4()),
                     "expected_seconds": history.get(target, default.get(
                         target, FILES_EXPECTED_SECONDS))}
                    for target, operation, target_state in stage_plan.members]
            if rows:
                s.execute(insert(Step), rows)
        return workflow.id


def _refuse_during_a_plan(s) -> None:
    running = s.exec(select(RunPlan).where(RunPlan.state == PlanState.RUNNING)).first()
    if running is not None:
        raise Refused(f"run plan {running.id} ({running.name}) is running: it starts the "
                      "runs; pause it (stop its run) or abort it first")


def next_canvas(s, workflow: Workflow):
    """What ``workflow`` sends next, read in session ``s``: the first stage (in the
    hardware's order) that has not succeeded, with its latest attempts that have not (a
    new workflow's first stage, where a replay resumes, or the stage after one that just
    succeeded); with every stage done, the final callback."""
    stage = s.exec(select(Stage).where(Stage.workflow_id == workflow.id,
                                       Stage.state != WorkflowState.SUCCEEDED.value)
                   .order_by(Stage.order)).first()
    steps = [] if stage is None else [
        step for step in step_records.latest_to_send(s, stage.id)
        if step.state != StepState.SUCCEEDED.value]
    return canvases.next_canvas(workflow, stage, steps)


def dispatch(workflow_id: int) -> None:
    """Send a written workflow's first stage that has not succeeded to the broker.

    Its callback sends the stage after it (``send_next``), and so on to the final
    callback: everything for a new workflow, only what is left for a replay.
    """
    run_id = results.broker_run_id()
    with session() as s:
        workflow = s.get(Workflow, workflow_id)
        workflow.broker_run_id = run_id
        canvas = next_canvas(s, workflow)
    try:
        canvas.apply_async()
    except (OperationalError, RedisConnectionError, OSError) as exc:
        workflow_records.fail_workflow(
            workflow_id, f"could not send the workflow to the broker: {exc}")
        raise Unavailable(f"the broker is unreachable ({exc}); nothing was started") from exc


def send_next(workflow_id: int) -> None:
    """From a stage's callback, once its stage has succeeded: send the next stage's chord,
    or the final callback after the last stage.

    If it cannot be sent, the callback fails as it would for any error: its errback
    fails the stage and the workflow, saying why, and a replay runs that stage's
    callback alone (its steps all succeeded), which sends it again.
    """
    with session() as s:
        canvas = next_canvas(s, s.get(Workflow, workflow_id))
    canvas.apply_async()


def launch(kind: str, title: str = "", run_class: str = RunClass.TEST, actor: str | None = None,
           **request) -> int:
    """Create and dispatch a workflow on behalf of ``actor``; returns its id. ``request``
    is a run's sheet or a server step's target (see ``create``)."""
    workflow_id = create(kind, title=title, run_class=run_class, actor=actor, **request)
    dispatch(workflow_id)
    forget_earlier_results(workflow_id)
    return workflow_id


# How many workflows before a new one have their Redis results deleted. More than one:
# a final callback stores its own result just after its workflow released the lock.
FORGET_WINDOW = 5


def forget_earlier_results(workflow_id: int) -> int:
    """Delete the Redis results of the workflows before this one; their record is in the database.

    Keeps Redis bounded over thousands of runs: at any time it holds the results
    of the last few workflows only. Returns how many keys went.
    """
    with session() as s:
        stage_rows = s.exec(select(Stage.id, Stage.callback_task_id, Stage.group_id).where(
            Stage.workflow_id < workflow_id,
            Stage.workflow_id >= workflow_id - FORGET_WINDOW)).all()
        step_ids = s.exec(select(Step.task_id).where(
            Step.stage_id.in_([stage_id for stage_id, _, _ in stage_rows]))).all()
        callbacks = s.exec(select(Workflow.callback_task_id).where(
            Workflow.id < workflow_id, Workflow.id >= workflow_id - FORGET_WINDOW)).all()
    ids = list(step_ids) + [cb for _, cb, _ in stage_rows] + list(callbacks)
    return results.forget([tid for tid in ids if tid], [gid for _, _, gid in stage_rows if gid])
