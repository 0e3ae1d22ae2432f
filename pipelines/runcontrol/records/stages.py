"""What a stage's chord callback and its errback write: the stage done, or failed and why."""
from __future__ import annotations

from sqlmodel import select

from models import Run, Stage, Workflow, session
from models.columns import utcnow
from models.vocabulary import ACTIVE_STATES, FilesOperation, StepState, WorkflowKind, WorkflowState
from pipelines.daq.ecc.states import Operation
from pipelines.runcontrol import lock
from pipelines.runcontrol.errors import StepFailed, Superseded
from pipelines.runcontrol.records.runs import record_run_stopped
from pipelines.runcontrol.records.steps import latest_outcomes
from pipelines.runcontrol.records.workflows import end_workflow


def complete_stage(stage_id: int, callback_task_id: str | None = None) -> dict:
    """The chord callback's work: check every member succeeded, then mark the stage done.

    Reads the outcomes from the database, so a replay of some members completes
    the stage just as well as the first attempt. A callback from before a replay
    (``callback_task_id`` no longer the stage's) fails, so it sends nothing on.
    """
    with session() as s:
        stage = s.get(Stage, stage_id)
        if callback_task_id and stage.callback_task_id != callback_task_id:
            raise Superseded(f"stage '{stage.name}' was replayed; this callback is stale")
        if s.get(Workflow, stage.workflow_id).state == WorkflowState.ABORTED.value:
            raise Superseded(f"stage '{stage.name}': its workflow was aborted")
        steps = latest_outcomes(s, stage_id)
        failed = [st for st in steps if st.state != StepState.SUCCEEDED.value]
        if failed:
            raise StepFailed(summary(stage, failed))
        stage.state, stage.finished_at, stage.error = WorkflowState.SUCCEEDED.value, utcnow(), None
        _after_stage(s, stage)
        return {"stage": stage.name, "members": len(steps), "workflow_id": stage.workflow_id}


def _after_stage(s, stage: Stage) -> None:
    # A stop is recorded once every source confirmed it, before any file is touched;
    # a run's files are organized once every router's files are.
    workflow = s.get(Workflow, stage.workflow_id)
    if workflow.kind != WorkflowKind.STOP_RUN:
        return
    stages = s.exec(select(Stage).where(Stage.workflow_id == workflow.id)).all()
    if stage.operation == Operation.STOP:
        stops = [st for st in stages if st.operation == Operation.STOP]
        if all(st.state == WorkflowState.SUCCEEDED.value for st in stops):
            record_run_stopped(s, workflow, stops)
    elif stage.operation == FilesOperation.ORGANIZE:
        run = s.get(Run, workflow.run_id)
        run.files_organized_at = run.files_organized_at or utcnow()


def summary(stage: Stage, failed: list) -> str:
    parts = [st.error or f"{st.target}: {st.state}" for st in failed[:5]]
    more = f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
    return (f"stage '{stage.name}': {len(failed)} step(s) did not succeed: " + "; ".join(parts)
            + more)


def fail_stage(stage_id: int, callback_error: str | None = None,
               callback_task_id: str | None = None) -> None:
    """The failure path of a stage: mark it and its workflow failed, saying why.

    Ignored when it comes from a callback that a replay has replaced.
    """
    with session() as s:
        stage = s.get(Stage, stage_id)
        if callback_task_id and stage.callback_task_id != callback_task_id:
            return
        workflow = s.get(Workflow, stage.workflow_id)
        if workflow.state not in ACTIVE_STATES:
            return  # aborted (or ended) already: its record stays as it is
        failed = [st for st in latest_outcomes(s, stage_id)
                  if st.state != StepState.SUCCEEDED.value]
        if failed:
            reason = summary(stage, failed)
        else:
            reason = f"stage '{stage.name}': callback failed: {callback_error or 'unknown error'}"
        now = utcnow()
        stage.state, stage.error, stage.finished_at = WorkflowState.FAILED.value, reason, now
        token = end_workflow(workflow, WorkflowState.FAILED, reason)
    lock.release(token)


def stage_callback_id(stage_id: int) -> str | None:
    """Task id of a stage's chord callback."""
    with session() as s:
        stage = s.get(Stage, stage_id)
        return stage.callback_task_id if stage else None
