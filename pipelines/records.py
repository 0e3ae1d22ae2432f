"""What workers write to the database as steps, stages and workflows move.

Tasks stay thin: they call an external system and hand the outcome to one of
these functions. Each opens its own short session.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import select, update

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
from pipelines import lock, nodes
from pipelines.ecc import ConfigId, DataLink, EccState


class StepFailed(Exception):
    """A step (or stage, or workflow) failed; the message says why, in the DAQ's terms."""


@dataclass(frozen=True)
class TransitionOrder:
    """Everything a transition task needs to drive one ECC server, read in one go."""

    server: str
    url: str
    operation: str
    target: EccState
    config: ConfigId
    links: list[DataLink]
    deadline_seconds: float
    expected_seconds: float


def _server_and_links(s, name: str) -> tuple[ECCServer | None, list[DataLink]]:
    """An ECC server and the data links of its sources, in one query."""
    rows = s.exec(
        select(ECCServer, DataSource, DataRouter)
        .join(DataSource, DataSource.ecc_server_id == ECCServer.id, isouter=True)
        .join(DataRouter, DataSource.data_router_id == DataRouter.id, isouter=True)
        .where(ECCServer.name == name)
        .order_by(DataSource.name)
    ).all()
    if not rows:
        return None, []
    return rows[0][0], [
        DataLink(source.name, router.name if router else "", router.ip_address if router else "",
                 router.port if router else 0, router.type if router else "TCP")
        for _, source, router in rows if source is not None]


def _step_rows(s, step_id: int) -> tuple[Step, Stage, Workflow]:
    # One query: hundreds of steps begin at once, and each query costs the worker CPU.
    row = s.exec(select(Step, Stage, Workflow)
                 .join(Stage, Step.stage_id == Stage.id)
                 .join(Workflow, Stage.workflow_id == Workflow.id)
                 .where(Step.id == step_id)).first()
    if row is None:
        raise StepFailed(f"step {step_id} does not exist")
    return row


def _refuse_ended(s, step: Step, workflow: Workflow) -> None:
    # A message delivered late (after its step was given up, its workflow ended, or a
    # replay made a newer attempt) must not touch the DAQ: the replay's attempt does.
    if step.state in (StepState.FAILED.value, StepState.LOST.value):
        raise StepFailed(f"{step.target}: attempt {step.attempt} already ended as {step.state}; "
                         "a replay runs a new attempt")
    if workflow.state not in ACTIVE_STATES:
        raise StepFailed(f"{step.target}: workflow {workflow.id} already {workflow.state}")
    newer = s.exec(select(Step.id).where(Step.stage_id == step.stage_id,
                                         Step.target == step.target,
                                         Step.attempt > step.attempt)).first()
    if newer is not None:
        raise StepFailed(f"{step.target}: attempt {step.attempt} was replaced by a replay")


def begin_transition(step_id: int, group_id: str | None = None) -> TransitionOrder:
    """Mark a transition step running and return what driving it takes.

    ``group_id`` is the Celery group the task ran in; the stage keeps the real one.
    """
    with session() as s:
        step, stage, workflow = _step_rows(s, step_id)
        _refuse_ended(s, step, workflow)
        server, links = _server_and_links(s, step.target)
        if server is None:
            raise StepFailed(f"ECC server {step.target} is not in the topology any more")
        config = workflow.params.get("config") or {}
        order = TransitionOrder(
            server=server.name, url=server.url, operation=step.operation,
            target=EccState(step.target_state),
            config=ConfigId(config.get("describe", ""), config.get("prepare", ""),
                            config.get("configure", "")),
            links=links, deadline_seconds=server.transition_timeout,
            expected_seconds=step.expected_seconds or server.expected_seconds,
        )
        _mark_running(step, stage, workflow, group_id)
    return order


def _mark_running(step: Step, stage: Stage, workflow: Workflow, group_id: str | None) -> None:
    if group_id and stage.group_id != group_id:
        stage.group_id = group_id
    now = utcnow()
    if step.state == StepState.PENDING.value:
        step.state = StepState.RUNNING.value
    step.started_at = step.started_at or now
    if stage.state == WorkflowState.PENDING.value:
        stage.state = WorkflowState.RUNNING.value
    if workflow.state == WorkflowState.PENDING.value:
        workflow.state = WorkflowState.RUNNING.value


@dataclass(frozen=True)
class FilesOrder:
    """What a files task needs: the node, the folders, and the run they belong to."""

    kind: str  # "data": a router's .graw files; "configs": an ECC server's .xcfg files
    target: str
    access: nodes.NodeAccess
    source_dir: str
    backup_root: str | None
    experiment: str
    run_number: int
    config_files: list[str]


def node_access(node: DaqNode) -> nodes.NodeAccess:
    """How to reach a node, from its row."""
    return nodes.NodeAccess(node.name, node.host, node.user, node.port, node.key_path)


def begin_files_step(step_id: int, group_id: str | None = None) -> FilesOrder:
    """Mark an organize or backup step running and return what it takes."""
    with session() as s:
        step, stage, workflow = _step_rows(s, step_id)
        _refuse_ended(s, step, workflow)
        run = s.get(Run, workflow.run_id) if workflow.run_id else None
        if run is None:
            raise StepFailed("the run whose files these are is not in the database")
        experiment = s.get(Experiment, run.experiment_id)
        if step.operation == "organize":
            owner = s.exec(select(DataRouter).where(DataRouter.name == step.target)).first()
            kind, what = "data", "data router"
        else:
            owner = s.exec(select(ECCServer).where(ECCServer.name == step.target)).first()
            kind, what = "configs", "ECC server"
        if owner is None:
            raise StepFailed(f"{what} {step.target} is not in the topology any more")
        node = s.get(DaqNode, owner.node_id) if owner.node_id else None
        if node is None:
            raise StepFailed(f"{what} {step.target} has no node to reach its files on")
        order = FilesOrder(
            kind=kind, target=step.target, access=node_access(node),
            source_dir=owner.staging_dir if kind == "data" else owner.config_dir,
            backup_root=None if kind == "data" else owner.backup_dir,
            experiment=experiment.name, run_number=run.number,
            config_files=nodes.config_files(workflow.params.get("config") or {})
            if kind == "configs" else [],
        )
        _mark_running(step, stage, workflow, group_id)
    return order


def finish_files_step(step_id: int, order: FilesOrder, moved: nodes.Moved) -> None:
    """Record a files step's success and add what it moved to the run's record."""
    with session() as s:
        step, _, workflow = _step_rows(s, step_id)
        if step.state in ENDED:
            return  # delivered twice: counted once
        record = s.exec(select(RunFiles).where(
            RunFiles.run_id == workflow.run_id, RunFiles.kind == order.kind,
            RunFiles.target == order.target)).first()
        if record is None:
            record = RunFiles(run_id=workflow.run_id, kind=order.kind, target=order.target,
                              node=order.access.name, folder=moved.folder)
            s.add(record)
        # A repeated organize moves only what was left, so the counts add up.
        record.files = (record.files or 0) + moved.files
        record.bytes = (record.bytes or 0) + moved.bytes
        record.folder, record.recorded_at = moved.folder, utcnow()
        if order.kind == "data":
            router = s.exec(select(DataRouter).where(DataRouter.name == order.target)).first()
            if router is not None:
                router.graw_files, router.checked_at = 0, utcnow()
        _finish(s, step)


def finish_step(step_id: int, error: str | None = None, ecc_state: int | None = None) -> None:
    """Record a step's end: succeeded, or failed with the error the operator will read."""
    with session() as s:
        step = s.get(Step, step_id)
        if step is not None:
            _finish(s, step, error, ecc_state)


ENDED = (StepState.SUCCEEDED.value, StepState.FAILED.value, StepState.LOST.value)


def _finish(s, step: Step, error: str | None = None, ecc_state: int | None = None) -> None:
    if step.state in ENDED:
        return
    now = utcnow()
    step.state = StepState.FAILED.value if error else StepState.SUCCEEDED.value
    step.error = error[:4000] if error else None
    step.finished_at = now
    step.started_at = step.started_at or now
    step.duration = (now - step.started_at).total_seconds()
    if ecc_state is not None:  # an UPDATE without reading the row first: one statement
        s.exec(update(ECCServer).where(ECCServer.name == step.target).values(
            state=ecc_state, online=True, last_seen_at=now, last_error=None))


def latest_attempts(s, stage_id: int) -> list[Step]:
    """The newest attempt of each member of a stage."""
    steps = s.exec(select(Step).where(Step.stage_id == stage_id).order_by(Step.attempt)).all()
    latest: dict[str, Step] = {}
    for step in steps:
        latest[step.target] = step
    return sorted(latest.values(), key=lambda st: st.target)


class Superseded(StepFailed):
    """A callback of an earlier attempt of a stage or workflow, replaced by a replay."""


def complete_stage(stage_id: int, callback_task_id: str | None = None) -> dict:
    """The chord callback's work: check every member succeeded, then mark the stage done.

    Reads the outcomes from the database, so a replay of some members completes
    the stage just as well as the first attempt. A callback from before a replay
    (``callback_task_id`` no longer the stage's) fails, so its old chain stops there.
    """
    with session() as s:
        stage = s.get(Stage, stage_id)
        if callback_task_id and stage.callback_task_id != callback_task_id:
            raise Superseded(f"stage '{stage.name}' was replayed; this callback is stale")
        steps = latest_attempts(s, stage_id)
        failed = [st for st in steps if st.state != StepState.SUCCEEDED.value]
        if failed:
            raise StepFailed(_summary(stage, failed))
        stage.state, stage.finished_at, stage.error = WorkflowState.SUCCEEDED.value, utcnow(), None
        _after_stage(s, stage)
        return {"stage": stage.name, "members": len(steps)}


def _after_stage(s, stage: Stage) -> None:
    # A stop is recorded once every source confirmed it, before any file is touched;
    # a run's files are organized once every router's files are.
    workflow = s.get(Workflow, stage.workflow_id)
    if workflow.kind != "stop_run":
        return
    stages = s.exec(select(Stage).where(Stage.workflow_id == workflow.id)).all()
    if stage.operation == "Stop":
        stops = [st for st in stages if st.operation == "Stop"]
        if all(st.state == WorkflowState.SUCCEEDED.value for st in stops):
            _record_run_stopped(s, workflow, stops)
    elif stage.operation == "organize":
        run = s.get(Run, workflow.run_id)
        run.files_organized_at = run.files_organized_at or utcnow()


def _summary(stage: Stage, failed: list[Step]) -> str:
    parts = [st.error or f"{st.target}: {st.state}" for st in failed[:5]]
    more = f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
    return f"stage '{stage.name}': {len(failed)} step(s) did not succeed: " + "; ".join(parts) + more


def _end_workflow(workflow: Workflow, state: WorkflowState, error: str | None = None) -> str | None:
    """Close a workflow; returns its lock token, to release once the session has committed."""
    workflow.state, workflow.error, workflow.finished_at = (
        state.value, error[:4000] if error else None, utcnow())
    return workflow.lock_token


def fail_stage(stage_id: int, callback_error: str | None = None,
               callback_task_id: str | None = None) -> None:
    """The failure path of a stage: mark it and its workflow failed, saying why.

    Ignored when it comes from a callback that a replay has replaced.
    """
    with session() as s:
        stage = s.get(Stage, stage_id)
        if callback_task_id and stage.callback_task_id != callback_task_id:
            return
        failed = [st for st in latest_attempts(s, stage_id) if st.state != StepState.SUCCEEDED.value]
        if failed:
            reason = _summary(stage, failed)
        else:
            reason = f"stage '{stage.name}': callback failed: {callback_error or 'unknown error'}"
        now = utcnow()
        stage.state, stage.error, stage.finished_at = WorkflowState.FAILED.value, reason, now
        token = _end_workflow(s.get(Workflow, stage.workflow_id), WorkflowState.FAILED, reason)
    lock.release(token)


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
        token = _end_workflow(workflow, WorkflowState.FAILED, reason)
    lock.release(token)


def stage_callback_id(stage_id: int) -> str | None:
    """Task id of a stage's chord callback."""
    with session() as s:
        stage = s.get(Stage, stage_id)
        return stage.callback_task_id if stage else None


def workflow_callback_id(workflow_id: int) -> str | None:
    """Task id of a workflow's final callback."""
    with session() as s:
        workflow = s.get(Workflow, workflow_id)
        return workflow.callback_task_id if workflow else None


def fail_workflow(workflow_id: int, reason: str, callback_task_id: str | None = None) -> None:
    """Mark a workflow failed (its final callback raised, or it could not be sent)."""
    with session() as s:
        workflow = s.get(Workflow, workflow_id)
        if workflow is None or workflow.state == WorkflowState.FAILED.value:
            return
        if callback_task_id and workflow.callback_task_id != callback_task_id:
            return  # the errback of a final callback that a replay has replaced
        token = _end_workflow(workflow, WorkflowState.FAILED, reason)
    lock.release(token)


def finish_workflow(workflow_id: int, callback_task_id: str | None = None) -> dict:
    """The final callback: record the run (for run start and stop) and close the workflow."""
    with session() as s:
        workflow = s.get(Workflow, workflow_id)
        if callback_task_id and workflow.callback_task_id != callback_task_id:
            raise Superseded(f"workflow {workflow_id} was replayed; this callback is stale")
        stages = s.exec(select(Stage).where(Stage.workflow_id == workflow_id)).all()
        unfinished = [st.name for st in stages if st.state != WorkflowState.SUCCEEDED.value]
        if unfinished:
            raise StepFailed(f"stage(s) not succeeded: {', '.join(unfinished)}")
        outcome: dict = {"workflow": workflow_id}
        if workflow.kind == "start_run":
            outcome["run"] = _record_run_started(s, workflow, stages)
        elif workflow.kind == "stop_run":
            outcome["run"] = _record_run_stopped(s, workflow, stages)
        token = _end_workflow(workflow, WorkflowState.SUCCEEDED)
    lock.release(token)
    return outcome


def _confirmed_at(s, stages: list[Stage]):
    # The run starts when the last source confirmed, not when the callback ran.
    times = [st.finished_at for stage in stages for st in latest_attempts(s, stage.id)
             if st.finished_at is not None]
    return max(times) if times else utcnow()


def _record_run_started(s, workflow: Workflow, stages: list[Stage]) -> int:
    if workflow.run_id is not None:  # already recorded: the callback ran twice
        return s.get(Run, workflow.run_id).number
    experiment = s.exec(select(Experiment).where(Experiment.active == True)).first()  # noqa: E712
    if experiment is None:
        raise StepFailed("no active experiment to record the run in")
    number = experiment.last_run_number + 1
    params = workflow.params
    run = Run(experiment_id=experiment.id, number=number, title=params.get("title", ""),
              run_class=params.get("run_class", "TEST"),
              config_name=(params.get("config") or {}).get("name", ""),
              started_at=_confirmed_at(s, stages))
    s.add(run)
    experiment.last_run_number = number
    s.flush()
    workflow.run_id = run.id
    return number


def _record_run_stopped(s, workflow: Workflow, stages: list[Stage]) -> int:
    run = s.get(Run, workflow.run_id) if workflow.run_id else None
    if run is None:
        raise StepFailed("the run this stop belongs to is not in the database")
    if run.stopped_at is None:
        run.stopped_at = _confirmed_at(s, [st for st in stages if st.operation == "Stop"])
    return run.number
