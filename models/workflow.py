"""The record of each workflow: stages (a group plus its chord callback) and steps."""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel

from models.columns import timestamp
from models.vocabulary import StepState, WorkflowState


# One run start, run stop or collective transition, as an operator asked for it.
class Workflow(SQLModel, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)
    # A WorkflowKind.
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
    # Run id of the Redis its messages were sent to: another one (a restart) has lost them.
    broker_run_id: Optional[str] = Field(default=None, max_length=64)
    created_at: datetime = timestamp(now=True)
    finished_at: Optional[datetime] = timestamp()


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
    finished_at: Optional[datetime] = timestamp()


# One attempt of one member of a stage: an ECC server's transition, or a node's files.
class Step(SQLModel, table=True):
    # A step's attempts by stage and target, newest last: beginning a step asks whether a
    # replay made a newer attempt of its target, and with only stage_id indexed that read
    # every step of the stage, N times a stage (252 against 24 us a step at N = 1024).
    __table_args__ = (Index("ix_step_stage_target_attempt", "stage_id", "target", "attempt"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    stage_id: int = Field(foreign_key="stage.id")
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
    started_at: Optional[datetime] = timestamp()
    finished_at: Optional[datetime] = timestamp()
    duration: Optional[float] = Field(default=None)
    # Seconds after the operation was sent that GetState last saw the transition under
    # way (None: its first poll found it settled), and that it saw it settled; None both
    # when the step sent nothing. They bound when the transition ended, from which the
    # next expected time is learned (a step's duration counts its first poll, which
    # comes at the expected time: learned from it, expected times could only grow).
    seen_moving_after: Optional[float] = Field(default=None)
    seen_settled_after: Optional[float] = Field(default=None)
    error: Optional[str] = Field(default=None, max_length=4000)
    # ECC state the server was confirmed in when the step succeeded: a stop may find one
    # already below RUNNING (rebooted, powered off), which counts as stopped.
    confirmed_state: Optional[int] = Field(default=None)
    # What the operator should know about a step that succeeded in an unusual way.
    note: Optional[str] = Field(default=None, max_length=500)
    # The Celery node that runs it (e.g. control1@daq-host): the lost-step sweep tells a
    # worker that answered without it from one that is only silent.
    worker: Optional[str] = Field(default=None, max_length=200)
