"""Aborting an active workflow: cut a hung server loose now, not at its deadline.

The workflow, its unfinished stages and steps are recorded ``aborted`` at once and
the lock is released. Every unfinished stage's callback gets a new id, so the ones
still in the broker find themselves stale, change nothing and send no stage on; a step
message delivered late finds its workflow ended and sends nothing to the DAQ. Steps still
running stop at their next poll (they read a flag in Redis, ``is_aborted``) and
write what GetState reported then. Members not started are revoked. Nothing is
recorded as a run started or stopped. A replay, or a Reset, follows.
"""
from __future__ import annotations

from uuid import uuid4

import redis
from sqlmodel import select

from models import Stage, Step, Workflow, session
from models.columns import utcnow
from models.vocabulary import ACTIVE_STATES, UNFINISHED_STEP_STATES, StepState, WorkflowState
from pipelines.daq.ecc.states import state_name
from pipelines.orchestration.app import app
from pipelines.runcontrol import accounts, lock
from pipelines.runcontrol.errors import NotFound, Refused
from pipelines.runcontrol.records.steps import latest_attempts

# Long enough for any step that was running to read it; then it expires.
FLAG_SECONDS = 86400


def _flag(lock_token: str) -> str:
    # Keyed by the lock token the workflow ran under: a replay runs under a new one, and
    # a workflow id may come back in a new database.
    return f"daqflow:aborted:{lock_token}"


def is_aborted(lock_token: str) -> bool:
    """Whether the workflow running under ``lock_token`` was aborted: what a running step
    asks at its polls."""
    try:
        return bool(lock.client(timeout=2).exists(_flag(lock_token)))
    except (redis.RedisError, OSError):
        return False  # Redis away: the step goes on; its workflow is ended in the database


def abort(workflow_id: int, actor: str | None = None) -> dict:
    """Abort an active workflow; returns what was cut loose. Refused when it has ended."""
    with session() as s:
        workflow = s.get(Workflow, workflow_id)
        if workflow is None:
            raise NotFound(f"no workflow {workflow_id}")
        if workflow.state not in ACTIVE_STATES:
            raise Refused(f"workflow {workflow_id} {workflow.state}: only an active workflow "
                          "can be aborted")
        who = (actor or accounts.local_actor())[:80]
        now = utcnow()
        revoke, running, waiting = [workflow.callback_task_id], [], []
        for stage in s.exec(select(Stage).where(Stage.workflow_id == workflow_id)).all():
            if stage.state == WorkflowState.SUCCEEDED.value:
                continue
            revoke.append(stage.callback_task_id)
            stage.callback_task_id = str(uuid4())  # the callback sent before is stale now
            if stage.state == WorkflowState.PENDING.value:
                continue  # never sent: it runs as it is on a replay
            stage.state, stage.finished_at = WorkflowState.ABORTED.value, now
            stage.error = f"aborted by {who}"
            for step in latest_attempts(s, stage.id):
                if step.state not in UNFINISHED_STEP_STATES:
                    continue
                (running if step.state == StepState.RUNNING.value else waiting).append(step)
                revoke.append(step.task_id)
        for step in running + waiting:
            _abort_step(step, who, now)
        workflow.callback_task_id = str(uuid4())
        workflow.state, workflow.finished_at = WorkflowState.ABORTED.value, now
        workflow.error = f"aborted by {who}"
        token = workflow.lock_token
        accounts.record(s, actor, "abort", workflow_id,
                        running=sorted(st.target for st in running),
                        not_started=sorted(st.target for st in waiting))
    try:
        if token:
            lock.client(timeout=2).set(_flag(token), who, ex=FLAG_SECONDS)
    except (redis.RedisError, OSError):
        pass  # the running steps go on to their deadline; the record is already right
    lock.release(token)
    _revoke([task_id for task_id in revoke if task_id])
    _refresh_states()
    return {"workflow_id": workflow_id, "running": sorted(st.target for st in running),
            "not_started": sorted(st.target for st in waiting)}


def _abort_step(step: Step, who: str, now) -> None:
    started = step.state == StepState.RUNNING.value
    step.state, step.finished_at = StepState.ABORTED.value, now
    step.started_at = step.started_at or now
    step.duration = (now - step.started_at).total_seconds()
    step.error = (f"aborted by {who} while in progress; its task lets go at its next poll"
                  if started else f"aborted by {who} before it started")


def _revoke(task_ids: list[str]) -> None:
    # A courtesy to the workers (the messages would change nothing anyway): they drop
    # revoked messages they receive from now on.
    try:
        app.control.revoke(task_ids)
    except Exception:  # noqa: BLE001  (the broker away: the guards still hold)
        pass


def _refresh_states() -> None:
    # Ask every server its state now (beat's task, out of turn): the page shows within
    # seconds where each one is, in transition or not.
    try:
        app.send_task("daqflow.watch.ecc")
    except Exception:  # noqa: BLE001  (beat asks again within seconds)
        pass


def record_stopped_step(step_id: int, task_id: str, state: int | None,
                        transition: int | None, error: str | None = None) -> None:
    """What an aborted step's task (``task_id``) saw when it stopped: GetState's answer,
    or why none."""
    with session() as s:
        step = s.get(Step, step_id)
        if step is None or step.task_id != task_id or step.state != StepState.ABORTED.value:
            return
        if error:
            seen = f"GetState failed: {error}"
        elif transition:
            seen = (f"GetState: {state_name(state)}, still in transition to "
                    f"{state_name(transition)}")
        else:
            seen = f"GetState: {state_name(state)}, settled"
        # "aborted by <who> while in progress; <what GetState said>"
        step.error = f"{(step.error or 'aborted').split(';')[0]}; {seen}"[:4000]
