"""The record of each workflow: stages (a group plus its chord callback) and steps."""
from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Optional

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from models.db import UTCDateTime, utcnow


class WorkflowState(str, Enum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class StepState(str, Enum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    LOST = "lost"


ACTIVE_STATES = (WorkflowState.PENDING.value, WorkflowState.RUNNING.value)


def _ts():
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))


# One run start, run stop or collective transition, as an operator asked for it.
class Workflow(SQLModel, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)
    kind: str = Field(index=True, max_length=32)
    run_id: Optional[int] = Field(default=None, foreign_key="run.id")
    state: str = Field(default=WorkflowState.PENDING.value, index=True, max_length=16)
    # What the operator asked for (title, run class, config), kept for the record.
    params: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # Task id of the final callback (records the run for start/stop).
    callback_task_id: Optional[str] = Field(default=None, max_length=64)
    error: Optional[str] = Field(default=None, max_length=4000)
    # Owner token of the run-control lock this workflow holds until it ends.
    lock_token: Optional[str] = Field(default=None, max_length=64)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    finished_at: Optional[datetime] = _ts()


# One stage of a workflow: a Celery group of steps followed by a chord callback.
class Stage(SQLModel, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)
    workflow_id: int = Field(foreign_key="workflow.id", index=True)
    order: int
    name: str = Field(max_length=100)
    operation: str = Field(max_length=32)
    group_id: Optional[str] = Field(default=None, max_length=64)
    callback_task_id: Optional[str] = Field(default=None, max_length=64)
    state: str = Field(default=WorkflowState.PENDING.value, max_length=16)
    error: Optional[str] = Field(default=None, max_length=4000)
    finished_at: Optional[datetime] = _ts()


# One attempt of one member of a stage: an ECC server's transition, or a node's files.
class Step(SQLModel, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)
    stage_id: int = Field(foreign_key="stage.id", index=True)
    # ECC server (or data router) name; names outlive topology reloads.
    target: str = Field(max_length=200)
    operation: str = Field(max_length=32)
    # ECC state the step must confirm (None for file steps).
    target_state: Optional[int] = Field(default=None)
    task_id: str = Field(index=True, unique=True, max_length=64)
    attempt: int = Field(default=1)
    state: str = Field(default=StepState.PENDING.value, max_length=16)
    # Seconds this transition is expected to take (from the server's history).
    expected_seconds: Optional[float] = Field(default=None)
    started_at: Optional[datetime] = _ts()
    finished_at: Optional[datetime] = _ts()
    duration: Optional[float] = Field(default=None)
    error: Optional[str] = Field(default=None, max_length=4000)
