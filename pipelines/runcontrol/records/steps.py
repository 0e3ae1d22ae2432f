"""What workers write as a step moves: begun (with what it takes), then succeeded or failed.

Tasks stay thin: they call an external system and hand the outcome to one of
these functions. Each opens its own short session.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import select, update

from models import session
from models.columns import utcnow
from models.daq import DaqNode, DataRouter, DataSource, ECCServer, Experiment, Run, RunFiles
from models.vocabulary import (
    ACTIVE_STATES,
    ENDED_STEP_STATES,
    UNSUCCESSFUL_STEP_STATES,
    FilesKind,
    FilesOperation,
    StepState,
    WorkflowState,
)
from models.workflow import Stage, Step, Workflow
from pipelines.daq.ecc.payloads import ConfigId, DataLink
from pipelines.daq.ecc.states import EccState
from pipelines.daq.nodes.connection import NodeAccess, access_of
from pipelines.daq.nodes.files import Moved, config_files
from pipelines.runcontrol.errors import StepFailed


@dataclass(frozen=True)
class TransitionOrder:
    """Everything a transition task needs to drive one ECC server, read in one go."""

    server: str
    url: str
    # The lock token its workflow runs under: an abort flags it (abort.is_aborted).
    abort_key: str | None
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
    if step.state in UNSUCCESSFUL_STEP_STATES:
        raise StepFailed(f"{step.target}: attempt {step.attempt} already ended as {step.state}; "
                         "a replay runs a new attempt")
    if workflow.state not in ACTIVE_STATES:
        raise StepFailed(f"{step.target}: workflow {workflow.id} already {workflow.state}")
    newer = s.exec(select(Step.id).where(Step.stage_id == step.stage_id,
                                         Step.target == step.target,
                                         Step.attempt > step.attempt)).first()
    if newer is not None:
        raise StepFailed(f"{step.target}: attempt {step.attempt} was replaced by a replay")


def config_of(workflow: Workflow, server: str) -> dict:
    """The config a workflow sends ``server``: chosen for it, or the active one, as planned."""
    return (workflow.params.get("configs") or {}).get(server) or \
        workflow.params.get("config") or {}


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
        config = config_of(workflow, step.target)
        order = TransitionOrder(
            server=server.name, url=server.url, abort_key=workflow.lock_token,
            operation=step.operation,
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

    kind: FilesKind  # a router's .graw files, or an ECC server's .xcfg files
    target: str
    access: NodeAccess
    source_dir: str
    backup_root: str | None
    experiment: str
    run_number: int
    config_files: list[str]


def begin_files_step(step_id: int, group_id: str | None = None) -> FilesOrder:
    """Mark an organize or backup step running and return what it takes."""
    with session() as s:
        step, stage, workflow = _step_rows(s, step_id)
        _refuse_ended(s, step, workflow)
        run = s.get(Run, workflow.run_id) if workflow.run_id else None
        if run is None:
            raise StepFailed("the run whose files these are is not in the database")
        experiment = s.get(Experiment, run.experiment_id)
        if step.operation == FilesOperation.ORGANIZE:
            owner = s.exec(select(DataRouter).where(DataRouter.name == step.target)).first()
            kind, what = FilesKind.DATA, "data router"
        else:
            owner = s.exec(select(ECCServer).where(ECCServer.name == step.target)).first()
            kind, what = FilesKind.CONFIGS, "ECC server"
        if owner is None:
            raise StepFailed(f"{what} {step.target} is not in the topology any more")
        node = s.get(DaqNode, owner.node_id) if owner.node_id else None
        if node is None:
            raise StepFailed(f"{what} {step.target} has no node to reach its files on")
        order = FilesOrder(
            kind=kind, target=step.target, access=access_of(node),
            source_dir=owner.staging_dir if kind == FilesKind.DATA else owner.config_dir,
            backup_root=None if kind == FilesKind.DATA else owner.backup_dir,
            experiment=experiment.name, run_number=run.number,
            config_files=config_files(config_of(workflow, step.target))
            if kind == FilesKind.CONFIGS else [],
        )
        _mark_running(step, stage, workflow, group_id)
    return order


def finish_files_step(step_id: int, order: FilesOrder, moved: Moved) -> None:
    """Record a files step's success, and the run's files it leaves on its node."""
    with session() as s:
        step, _, workflow = _step_rows(s, step_id)
        if step.state in ENDED_STEP_STATES:
            return  # delivered twice: counted once
        record = s.exec(select(RunFiles).where(
            RunFiles.run_id == workflow.run_id, RunFiles.kind == order.kind,
            RunFiles.target == order.target)).first()
        if record is None:
            record = RunFiles(run_id=workflow.run_id, kind=order.kind, target=order.target,
                              node=order.access.name, folder=moved.folder)
            s.add(record)
        if order.kind == FilesKind.DATA:
            # An organize counts its router's whole run folder, so what an interrupted
            # attempt moved before a replay is counted once, and not lost.
            record.files, record.bytes = moved.files, moved.bytes
        else:
            # Servers may share a backup folder: each counts what it copied itself.
            record.files = (record.files or 0) + moved.files
            record.bytes = (record.bytes or 0) + moved.bytes
        record.folder, record.recorded_at = moved.folder, utcnow()
        if order.kind == FilesKind.DATA:
            router = s.exec(select(DataRouter).where(DataRouter.name == order.target)).first()
            if router is not None:
                router.graw_files, router.checked_at = 0, utcnow()
        _finish(s, step)


def finish_step(step_id: int, error: str | None = None, ecc_state: int | None = None,
                note: str | None = None) -> None:
    """Record a step's end: succeeded (in ``ecc_state``, with a ``note`` when it succeeded
    in an unusual way), or failed with the error the operator will read."""
    with session() as s:
        step = s.get(Step, step_id)
        if step is not None:
            _finish(s, step, error, ecc_state, note)


def _finish(s, step: Step, error: str | None = None, ecc_state: int | None = None,
            note: str | None = None) -> None:
    if step.state in ENDED_STEP_STATES:
        return
    now = utcnow()
    step.state = StepState.FAILED.value if error else StepState.SUCCEEDED.value
    step.error = error[:4000] if error else None
    step.finished_at = now
    step.started_at = step.started_at or now
    step.duration = (now - step.started_at).total_seconds()
    step.confirmed_state, step.note = ecc_state, note[:500] if note else None
    if ecc_state is not None:  # an UPDATE without reading the row first: one statement
        seen = dict(state=ecc_state, transition=0, online=True, last_seen_at=now,
                    last_error=None)
        if ecc_state == EccState.RUNNING:
            seen["running_seen_at"] = now
        s.exec(update(ECCServer).where(ECCServer.name == step.target).values(**seen))


def latest_attempts(s, stage_id: int) -> list[Step]:
    """The newest attempt of each member of a stage."""
    steps = s.exec(select(Step).where(Step.stage_id == stage_id).order_by(Step.attempt)).all()
    latest: dict[str, Step] = {}
    for step in steps:
        latest[step.target] = step
    return sorted(latest.values(), key=lambda st: st.target)
