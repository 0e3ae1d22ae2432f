"""Watching the DAQ between workflows, and workflows whose worker died.

Celery beat runs these periodically (see ``orchestration.celeryconfig.beat_schedule``):

- every ECC server's state, asked with GetState, every 5 s; an unreachable server
  is recorded offline (state unknown) with the error and when it was last seen;
  a server with a transition step running is left to that step;
- data routers (process and staging directory) every 15 s;
- workflows whose messages went to a Redis that has restarted since: failed at once;
- steps marked running whose task no live worker is executing: lost.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import RedisError
from sqlalchemy import func, or_
from sqlmodel import select, update

from models import EccSample, ECCServer, Stage, Step, StepState, Workflow, session, settings
from models.columns import utcnow
from models.vocabulary import ACTIVE_STATES, UNFINISHED_STEP_STATES
from pipelines.daq.ecc.client import EccError, client_for
from pipelines.daq.ecc.states import EccState, state_name
from pipelines.orchestration import results
from pipelines.orchestration.app import app
from pipelines.runcontrol.records import stages as stage_records
from pipelines.runcontrol.records import workflows as workflow_records
from pipelines.runcontrol.records.steps import latest_attempts

LOST_ERROR = ("lost: no live worker is running this step (its worker died or was killed); "
              "replay the workflow")


def _busy_servers(s) -> set[str]:
    rows = s.exec(select(Step.target).where(Step.state == StepState.RUNNING.value,
                                            Step.target_state != None)).all()  # noqa: E711
    return set(rows)


def _ask(server: ECCServer) -> tuple[str, datetime, int | None, int | None, str | None]:
    asked_at = utcnow()
    try:
        report = client_for(server.name, server.url).get_state()
    except EccError as exc:
        return server.name, asked_at, None, None, str(exc)
    return server.name, asked_at, report.state, report.transition, None


def refresh_ecc_states() -> dict[str, str]:
    """Ask every idle ECC server its state and record it; {server: state name or error}."""
    with session() as s:
        busy = _busy_servers(s)
        servers = [srv for srv in s.exec(select(ECCServer)).all() if srv.name not in busy]
    if not servers:
        return {}
    with ThreadPoolExecutor(max_workers=min(32, len(servers))) as pool:
        answers = list(pool.map(_ask, servers))
    outcome = {}
    with session() as s:
        for name, asked_at, state, transition, error in answers:
            # A transition that ended after we asked wrote a newer truth: keep it.
            newer = or_(ECCServer.last_seen_at == None, ECCServer.last_seen_at < asked_at)  # noqa: E711
            values = (dict(state=state, transition=transition, online=True,
                           last_seen_at=asked_at, last_error=None)
                      if error is None else dict(state=None, transition=None, online=False,
                                                 last_error=error[:2000]))
            if state == EccState.RUNNING:
                values["running_seen_at"] = asked_at
            s.exec(update(ECCServer).where(ECCServer.name == name, newer).values(**values))
            outcome[name] = state_name(state) if error is None else error
        _sample_changes(s, answers)
    return outcome


def _sample_changes(s, answers: list) -> None:
    # A sample only where reachability or state changed: a state holds until the next one,
    # so the series is exact at a fraction of a row per server per watch.
    latest = s.exec(select(EccSample.server, func.max(EccSample.id))
                    .where(EccSample.server.in_([a[0] for a in answers]))
                    .group_by(EccSample.server)).all()
    last = {row.server: row for row in s.exec(select(EccSample).where(
        EccSample.id.in_([sample_id for _, sample_id in latest])))} if latest else {}
    for name, asked_at, state, transition, error in answers:
        before = last.get(name)
        now = (error is None, state, transition)
        if before is None or (before.online, before.state, before.transition) != now:
            s.add(EccSample(server=name, at=asked_at, online=error is None, state=state,
                            transition=transition, error=error[:500] if error else None))


@dataclass(frozen=True)
class WorkerReport:
    """What one round of asking the workers told: who answered, and what they execute."""

    answered: frozenset[str]  # Celery node names, e.g. control1@daq-host
    active: frozenset[str]  # ids of the tasks those nodes are executing


def ask_workers(timeout: float = 2.0) -> WorkerReport | None:
    """Ask every worker what it is executing; None when nothing can be told: the broker is
    unreachable, or no worker answered in time (all dead, or all too busy to answer: the
    two look the same, so neither counts as "gone")."""
    try:
        replies = app.control.inspect(timeout=timeout).active()
    except (OSError, RedisError, KombuOperationalError):
        return None
    if not replies:
        return None
    return WorkerReport(frozenset(replies),
                        frozenset(task["id"] for tasks in replies.values() for task in tasks))


# When each running step was first missing from the workers' reports (task id -> epoch
# seconds): beat's rounds may run in any worker, on any host.
MISSING_KEY = "daqflow:steps-missing-since"


def _missing_for(running: list[str], active: frozenset[str]) -> dict[str, float]:
    """How long each running task has been missing from every report, this one included."""
    client = app.backend.client
    now = time.time()
    try:
        since = {key.decode(): float(value)
                 for key, value in client.hgetall(MISSING_KEY).items()}
        missing = {task_id: since.get(task_id, now) for task_id in running
                   if task_id not in active}
        with client.pipeline() as pipe:  # found again, or ended: forgotten
            pipe.delete(MISSING_KEY)
            if missing:
                pipe.hset(MISSING_KEY, mapping=missing)
            pipe.execute()
    except (RedisError, OSError):
        return {}  # Redis is away: nothing can be told, nothing is lost
    return {task_id: now - first for task_id, first in missing.items()}


# A running step whose task no live worker reports is lost only once it has been missing
# from every inspection for DAQFLOW_STEP_LOST_SECONDS, with its own worker answering
# (restarted, it lost the task): a worker paused for a few seconds (SIGSTOP, a long garbage
# collection, a loaded host) answers again, and its steps go on. A worker that stays silent
# while others answer is given DAQFLOW_WORKER_GONE_SECONDS before it counts as gone; a
# round where no worker answers at all tells nothing and changes nothing.
def sweep_lost_steps(report: WorkerReport | None = None, lost_after: float | None = None,
                     gone_after: float | None = None) -> list[int]:
    """Mark lost the running steps no worker has reported for ``lost_after`` seconds
    (DAQFLOW_STEP_LOST_SECONDS) while their own worker answered (or, for a worker silent
    while others answer, for ``gone_after``: DAQFLOW_WORKER_GONE_SECONDS); fail their
    stages once settled.

    The update is conditional on the step still running, so a step that ended
    between the database read and the worker inspection keeps its real outcome.
    """
    with session() as s:
        running = s.exec(
            select(Step.id, Step.task_id, Step.worker).join(Stage, Step.stage_id == Stage.id)
            .join(Workflow, Stage.workflow_id == Workflow.id)
            .where(Step.state == StepState.RUNNING.value, Workflow.state.in_(ACTIVE_STATES))
        ).all()
    report = ask_workers() if report is None else report
    if report is None:
        return []
    sweep_stalled_workflows(report.active, settings.STALL_SECONDS.get())
    lost = _mark_lost(running, report, lost_after, gone_after) if running else []
    # A stage partly lost waits for its other steps; its chord will never call back, so
    # the round after the last of them ends fails it (with the lost steps' error).
    for stage_id in _stages_with_lost_steps():
        _fail_if_settled(stage_id)
    return lost


def _mark_lost(running: list, report: WorkerReport, lost_after: float | None,
               gone_after: float | None) -> list[int]:
    lost_after = settings.STEP_LOST_SECONDS.get() if lost_after is None else lost_after
    gone_after = settings.WORKER_GONE_SECONDS.get() if gone_after is None else gone_after
    missing = _missing_for([task_id for _, task_id, _ in running], report.active)

    def bound(worker: str | None) -> float:
        # Its worker answered without it (or none is known): the task is gone from it.
        return lost_after if worker is None or worker in report.answered else gone_after

    missing_long = [(step_id, task_id) for step_id, task_id, worker in running
                    if task_id in missing and missing[task_id] >= bound(worker)]
    lost = []
    if not missing_long:
        return lost
    with session() as s:
        for step_id, task_id in missing_long:
            # Only while the step still runs the task found missing: a round that read the
            # steps before a replay, or before the database gave their ids to new rows
            # (a round held up past its time), touches nothing else.
            marked = s.exec(update(Step).where(Step.id == step_id, Step.task_id == task_id,
                                               Step.state == StepState.RUNNING.value)
                            .values(state=StepState.LOST.value, error=LOST_ERROR,
                                    finished_at=utcnow()))
            if marked.rowcount:
                lost.append(step_id)
    return lost


def _stages_with_lost_steps() -> set[int]:
    """The active stages of active workflows that have a lost step."""
    with session() as s:
        return set(s.exec(
            select(Step.stage_id).join(Stage, Step.stage_id == Stage.id)
            .join(Workflow, Stage.workflow_id == Workflow.id)
            .where(Workflow.state.in_(ACTIVE_STATES), Stage.state.in_(ACTIVE_STATES),
                   Step.state == StepState.LOST.value)).all())


BROKER_RESTARTED = ("Redis restarted while this workflow ran: its queued messages and the "
                    "stage's callback are gone (the sources confirmed what they did); replay it")


def sweep_broker_restarts() -> list[int]:
    """Fail at once the active workflows whose messages went to a Redis that has restarted.

    A Redis that does not answer says nothing: its workflows are left as they are.
    """
    current = results.broker_run_id()
    if current is None:
        return []
    with session() as s:
        lost = s.exec(select(Workflow.id).where(
            Workflow.state.in_(ACTIVE_STATES), Workflow.broker_run_id != None,  # noqa: E711
            Workflow.broker_run_id != current)).all()
    for workflow_id in lost:
        workflow_records.fail_stalled(workflow_id, BROKER_RESTARTED)
    return list(lost)


STALLED = ("stalled: no worker runs any of its tasks and nothing has happened for {:g} s "
           "(a worker or the broker lost its messages, e.g. Redis restarted); replay it")


def sweep_stalled_workflows(active: frozenset[str], stall_seconds: float) -> list[int]:
    """Fail active workflows that nothing has moved for ``stall_seconds``, so they can be replayed.

    A workflow is stalled when none of its steps runs, no worker executes any of
    its tasks, and no step started or ended for that long.
    """
    now = utcnow()
    stalled = []
    with session() as s:
        for workflow in s.exec(select(Workflow).where(Workflow.state.in_(ACTIVE_STATES))).all():
            stages = s.exec(select(Stage).where(Stage.workflow_id == workflow.id)).all()
            steps = s.exec(select(Step).where(Step.stage_id.in_([st.id for st in stages]))).all()
            ids = {workflow.callback_task_id} | {st.callback_task_id for st in stages}
            ids |= {step.task_id for step in steps}
            if ids & active or any(step.state == StepState.RUNNING.value for step in steps):
                continue
            times = [workflow.created_at] + [t for step in steps
                                             for t in (step.started_at, step.finished_at) if t]
            times += [st.finished_at for st in stages if st.finished_at]
            if (now - max(times)).total_seconds() >= stall_seconds:
                stalled.append(workflow.id)
    for workflow_id in stalled:
        workflow_records.fail_stalled(workflow_id, STALLED.format(stall_seconds))
    return stalled


def _fail_if_settled(stage_id: int) -> None:
    # The chord will never call back (a member never reports): once the other members
    # have ended, fail the stage and its workflow so that it can be replayed.
    with session() as s:
        stage = s.get(Stage, stage_id)
        if stage.state not in ACTIVE_STATES:
            return
        steps = latest_attempts(s, stage_id)
        if any(st.state in UNFINISHED_STEP_STATES for st in steps):
            return
        if not any(st.state == StepState.LOST.value for st in steps):
            return  # a replay's new attempts took over: their chord calls back
        callback = stage.callback_task_id
    stage_records.fail_stage(stage_id, callback_task_id=callback)
