"""What a workflow's final callback and its failure paths write: the workflow closed, and
for a run start or stop the run recorded. Each releases the run-control lock after its
session has committed.
"""
from __future__ import annotations

from sqlmodel import select

from models import Stage, Workflow, session
from models.columns import utcnow
from models.vocabulary import ACTIVE_STATES, WorkflowKind, WorkflowState
from pipelines.runcontrol import lock
from pipelines.runcontrol.errors import StepFailed, Superseded
from pipelines.runcontrol.records.runs import record_run_started, record_run_stopped


def end_workflow(workflow: Workflow, state: WorkflowState, error: str | None = None) -> str | None:
    """Close a workflow; returns its lock token, to release once the session has committed."""
    workflow.state, workflow.error, workflow.finished_at = (
        state.value, error[:4000] if error else None, utcnow())
    return workflow.lock_token


def fail_stalled(workflow_id: int, reason: str) -> None:
    """Fail a workflow nothing moves any more: its first unfinished stage, then itself."""
    with session() as s:
        workflow = s.get(Workflow, workflow_id)
        if workflow is None or workflow.state not in ACTIVE_STATES:
            return
        stages = s.exec(select(Stage).where(Stage.workflow_id == workflow_id)
                        .order_by(Stage.order)).all()
        stage = next((st for st in stages if st.state != WorkflowState.SUCCEEDED.value), None)
        if stage is not None:
            stage.state, stage.error = WorkflowState.FAILED.value, reason
            stage.finished_at = utcnow()
        token = end_workflow(workflow, WorkflowState.FAILED, reason)
    lock.release(token)


def workflow_callback_id(workflow_id: int) -> str | None:
    """Task id of a workflow's final callback."""
    with session() as s:
        workflow = s.get(Workflow, workflow_id)
        return workflow.callback_task_id if workflow else None


def fail_workflow(workflow_id: int, reason: str, callback_task_id: str | None = None) -> None:
    """Mark a workflow failed (its final callback raised, or it could not be sent)."""
    with session() as s:
        workflow = s.get(Workflow, workflow_id)
        if workflow is None or workflow.state not in ACTIVE_STATES:
            return  # failed or aborted already: the first word stays
        if callback_task_id and workflow.callback_task_id != callback_task_id:
            return  # the errback of a final callback that a replay has replaced
        token = end_workflow(workflow, WorkflowState.FAILED, reason)
    lock.release(token)


def finish_workflow(workflow_id: int, callback_task_id: str | None = None) -> dict:
    """The final callback: record the run (for run start and stop) and close the workflow."""
    with session() as s:
        workflow = s.get(Workflow, workflow_id)
        if callback_task_id and workflow.callback_task_id != callback_task_id:
            raise Superseded(f"workflow {workflow_id} was replayed or aborted; this callback "
                             "is stale")
        if workflow.state == WorkflowState.ABORTED.value:
            raise Superseded(f"workflow {workflow_id} was aborted; nothing more is recorded")
        stages = s.exec(select(Stage).where(Stage.workflow_id == workflow_id)).all()
        unfinished = [st.name for st in stages if st.state != WorkflowState.SUCCEEDED.value]
        if unfinished:
            raise StepFailed(f"stage(s) not succeeded: {', '.join(unfinished)}")
        outcome: dict = {"workflow": workflow_id}
        if workflow.kind == WorkflowKind.START_RUN:
            outcome["run"] = record_run_started(s, workflow, stages)
        elif workflow.kind == WorkflowKind.STOP_RUN:
            outcome["run"] = record_run_stopped(s, workflow, stages)
        token = end_workflow(workflow, WorkflowState.SUCCEEDED)
    lock.release(token)
    return outcome
