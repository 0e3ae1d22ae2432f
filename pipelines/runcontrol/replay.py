"""Replaying a failed workflow: redo what failed, never what worked, then go on.

The first stage that did not succeed gets a new attempt (attempt + 1, a new task
id) of each member whose latest attempt failed or was lost; its callback gets a
new id, so the old chain's callbacks and errbacks know they are stale. If every
member had succeeded (the callback itself failed), the callback runs alone. The
stages after it, and the final callback, follow as in the first run.
"""
from __future__ import annotations

from uuid import uuid4

from sqlmodel import select

from models import Stage, Step, StepState, Workflow, WorkflowState, session
from models.vocabulary import ACTIVE_STATES, UNFINISHED_STEP_STATES
from pipelines.runcontrol import accounts, lock
from pipelines.runcontrol.errors import NotFound, Refused
from pipelines.runcontrol.launching import dispatch, take_lock
from pipelines.runcontrol.records.steps import latest_attempts


def _plan_replay(s, workflow_id: int, token: str, actor: str | None) -> dict:
    workflow = s.get(Workflow, workflow_id)
    if workflow is None:
        raise NotFound(f"no workflow {workflow_id}")
    if workflow.state in ACTIVE_STATES:
        raise Refused(f"workflow {workflow_id} is still active; wait for it to end")
    if workflow.state != WorkflowState.FAILED.value:
        raise Refused(f"workflow {workflow_id} {workflow.state}: nothing failed, nothing to replay")
    other = s.exec(select(Workflow).where(Workflow.state.in_(ACTIVE_STATES),
                                          Workflow.id != workflow_id)).first()
    if other is not None:
        raise Refused(f"workflow {other.id} ({other.kind}) is active; replay when it has ended")
    stages = s.exec(select(Stage).where(Stage.workflow_id == workflow_id)
                    .order_by(Stage.order)).all()
    remaining = [st for st in stages if st.state != WorkflowState.SUCCEEDED.value]
    redone = []
    for stage in remaining:
        started = stage.state != WorkflowState.PENDING.value
        for step in latest_attempts(s, stage.id):
            if step.state == StepState.SUCCEEDED.value or not started:
                continue  # done, or in a stage never sent: it runs as it is
            if step.state in UNFINISHED_STEP_STATES:
                # Its message may still be in the broker: retire it for the new attempt.
                step.state, step.error = StepState.LOST.value, "replaced by a replay"
            s.add(Step(stage_id=stage.id, target=step.target, operation=step.operation,
                       target_state=step.target_state, task_id=str(uuid4()),
                       attempt=step.attempt + 1, expected_seconds=step.expected_seconds))
            redone.append(step.target)
        stage.state, stage.error, stage.finished_at = WorkflowState.PENDING.value, None, None
        stage.group_id, stage.callback_task_id = str(uuid4()), str(uuid4())
    workflow.state, workflow.error, workflow.finished_at = WorkflowState.PENDING.value, None, None
    workflow.callback_task_id, workflow.lock_token = str(uuid4()), token
    accounts.record(s, actor, "replay", workflow_id, steps=sorted(redone))
    return {"workflow_id": workflow_id, "replayed_steps": sorted(redone),
            "stages": [st.name for st in remaining]}


def replay(workflow_id: int, actor: str | None = None) -> dict:
    """Replay a failed workflow's failed (or lost) steps and what follows them.

    Refused while it is active, when nothing failed, or while another workflow
    is active. ``actor`` goes in the audit. Returns what is replayed.
    """
    token = take_lock()
    try:
        with session() as s:
            planned = _plan_replay(s, workflow_id, token, actor)
    except BaseException:
        lock.release(token)
        raise
    dispatch(workflow_id)
    return planned
