"""What workers write as a files step moves: a router's run files organized, or an ECC
server's configs backed up, on its node (see ``steps`` for what every step shares)."""
from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import select

from models import session
from models.columns import utcnow
from models.daq import DaqNode, DataRouter, ECCServer, Experiment, Run, RunFiles
from models.vocabulary import ENDED_STEP_STATES, FilesKind, FilesOperation
from pipelines.daq.nodes.connection import NodeAccess, access_of
from pipelines.daq.nodes.files import Moved, config_files
from pipelines.runcontrol.errors import StepFailed
from pipelines.runcontrol.records.steps import (
    config_of,
    end_row,
    mark_running,
    record_end,
    refuse_ended,
    step_row,
)


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


def begin_files_step(step_id: int, task_id: str, worker: str | None = None,
                     group_id: str | None = None) -> FilesOrder:
    """Mark an organize or backup step running on ``worker`` and return what it takes
    (as ``begin_transition``)."""
    with session() as s:
        row = step_row(s.connection(), step_id, task_id)
        refuse_ended(row)
        run = s.get(Run, row.run_id) if row.run_id else None
        if run is None:
            raise StepFailed("the run whose files these are is not in the database")
        experiment = s.get(Experiment, run.experiment_id)
        if row.operation == FilesOperation.ORGANIZE:
            owner = s.exec(select(DataRouter).where(DataRouter.name == row.target)).first()
            kind, what = FilesKind.DATA, "data router"
        else:
            owner = s.exec(select(ECCServer).where(ECCServer.name == row.target)).first()
            kind, what = FilesKind.CONFIGS, "ECC server"
        if owner is None:
            raise StepFailed(f"{what} {row.target} is not in the topology any more")
        node = s.get(DaqNode, owner.node_id) if owner.node_id else None
        if node is None:
            raise StepFailed(f"{what} {row.target} has no node to reach its files on")
        order = FilesOrder(
            kind=kind, target=row.target, access=access_of(node),
            source_dir=owner.staging_dir if kind == FilesKind.DATA else owner.config_dir,
            backup_root=None if kind == FilesKind.DATA else owner.backup_dir,
            experiment=experiment.name, run_number=run.number,
            config_files=config_files(config_of(s.connection(), row))
            if kind == FilesKind.CONFIGS else [],
        )
        mark_running(s.connection(), row, worker, group_id)
    return order


def finish_files_step(step_id: int, task_id: str, order: FilesOrder, moved: Moved) -> None:
    """Record a files step's success, and the run's files it leaves on its node."""
    with session() as s:
        row = end_row(s, step_id, task_id)
        if row is None or row.state in ENDED_STEP_STATES:
            return  # delivered twice: counted once
        record = s.exec(select(RunFiles).where(
            RunFiles.run_id == row.run_id, RunFiles.kind == order.kind,
            RunFiles.target == order.target)).first()
        if record is None:
            record = RunFiles(run_id=row.run_id, kind=order.kind, target=order.target,
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
        record_end(s.connection(), step_id, task_id, row.target, row.started_at)
