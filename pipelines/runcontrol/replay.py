"""Replaying a failed or aborted workflow: redo what did not succeed, never what worked.

The first stage that did not succeed gets a new attempt (attempt + 1, a new task
id) of each member whose latest attempt failed, was lost or was aborted; its
callback gets a new id, so the callbacks and errbacks sent before know they are
stale. If every member had succeeded (the callback itself failed), the callback
runs alone. The stages after it, and the final callback, follow as in the first
run. ``preview`` says all this before it happens (``dry_run``), from the same
reading of the record the replay itself uses.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from uuid import uuid4

from sqlmodel import select

from models import Stage, Step, StepState, Workflow, WorkflowState, session
from models.vocabulary import ACTIVE_STATES, REPLAYABLE_STATES, UNFINISHED_STEP_STATES
from pipelines.runcontrol import accounts, lock
from pipelines.runcontrol.errors import NotFound, Refused
from pipelines.runcontrol.launching import dispatch, take_lock
from pipelines.runcontrol.records.steps import latest_attempts


@dataclass
class _Replay:
    """What a replay of one workflow does, read from its record."""

    workflow: Workflow
    stages: list[Stage] = field(default_factory=list)  # the ones that run again, in order
    redo: list[tuple[Stage, Step]] = field(default_factory=list)  # attempts that get a new one
    left_alone: list[Step] = field(default_factory=list)  # succeeded: not sent again

    def describe(self) -> dict:
        return {
            "workflow_id": self.workflow.id,
            "replayed_steps": sorted(step.target for _, step in self.redo),
            "steps": [{"stage": stage.name, "target": step.target, "operation": step.operation,
                       "last_state": step.state, "last_error": step.error}
                      for stage, step in self.redo],
            "stages": [stage.name for stage in self.stages],
            "then": [f"{stage.name}: callback" for stage in self.stages] + ["final callback"],
            "left_alone": len(self.left_alone),
        }


def _read(s, workflow_id: int) -> _Replay:
    workflow = s.get(Workflow, workflow_id)
    if workflow is None:
        raise NotFound(f"no workflow {workflow_id}")
    if workflow.state in ACTIVE_STATES:
        raise Refused(f"workflow {workflow_id} is still active; wait for it to end")
    if workflow.state not in REPLAYABLE_STATES:
        raise Refused(f"workflow {workflow_id} {workflow.state}: nothing failed, nothing to replay")
    other = s.exec(select(Workflow).where(Workflow.state.in_(ACTIVE_STATES),
                                          Workflow.id != workflow_id)).first()
    if other is not None:
        raise Refused(f"workflow {other.id} ({other.kind}) is active; replay when it has ended")
    plan = _Replay(workflow)
    for stage in s.exec(select(Stage).where(Stage.workflow_id == workflow_id)
                        .order_by(Stage.order)).all():
        steps = latest_attempts(s, stage.id)
        done = [step for step in steps if step.state == StepState.SUCCEEDED.value]
        plan.left_alone += done
        if stage.state == WorkflowState.SUCCEEDED.value:
            continue
        plan.stages.append(stage)
        if stage.state != WorkflowState.PENDING.value:  # never sent: it runs as it is
            plan.redo += [(stage, step) for step in steps if step not in done]
    return plan


def preview(workflow_id: int) -> dict:
    """What a replay would do, without doing it: the steps that run again (with their last
    error), the stages and callbacks that follow, and how many succeeded steps stay as
    they are. Refused or NotFound just as the replay would be."""
    with session() as s:
        return _read(s, workflow_id).describe()


def _apply(s, plan: _Replay, token: str, actor: str | None) -> dict:
    for stage, step in plan.redo:
        if step.state in UNFINISHED_STEP_STATES:
            # Its message may still be in the broker: retire it for the new attempt.
            step.state, step.error = StepState.LOST.value, "replaced by a replay"
        s.add(Step(stage_id=stage.id, target=step.target, operation=step.operation,
                   target_state=step.target_state, task_id=str(uuid4()),
                   attempt=step.attempt + 1, expected_seconds=step.expected_seconds))
    for stage in plan.stages:
        stage.state, stage.error, stage.finished_at = WorkflowState.PENDING.value, None, None
        stage.group_id, stage.callback_task_id = str(uuid4()), str(uuid4())
    workflow = plan.workflow
    workflow.state, workflow.error, workflow.finished_at = WorkflowState.PENDING.value, None, None
    workflow.callback_task_id, workflow.lock_token = str(uuid4()), token
    described = plan.describe()
    accounts.record(s, actor, "replay", workflow.id, steps=described["replayed_steps"])
    return described


def replay(workflow_id: int, actor: str | None = None) -> dict:
    """Replay a failed or aborted workflow's unsuccessful steps and what follows them.

    Refused while it is active, when nothing failed, or while another workflow
    is active. ``actor`` goes in the audit. Returns what is replayed (as ``preview``).
    """
    token = take_lock()
    try:
        with session() as s:
            planned = _apply(s, _read(s, workflow_id), token, actor)
    except BaseException:
        lock.release(token)
        raise
    dispatch(workflow_id)
    return planned
