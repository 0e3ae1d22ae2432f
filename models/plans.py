"""Run plans: an ordered list of runs daqflow takes one after the other, unattended."""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import JSON, BigInteger, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from models.columns import timestamp
from models.vocabulary import EntryState, PlanState, RunClass


# A run plan (a calibration campaign): its entries run in order; one plan at a time runs.
class RunPlan(SQLModel, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    # A PlanState; why it paused (the failed workflow's words, an operator's stop).
    state: str = Field(default=PlanState.RUNNING.value, index=True, max_length=16)
    error: Optional[str] = Field(default=None, max_length=2000)
    created_by: str = Field(default="", max_length=80)
    created_at: datetime = timestamp(now=True)
    finished_at: Optional[datetime] = timestamp()
    # The last workflow the plan launched: its end advances the plan, or pauses it.
    workflow_id: Optional[int] = Field(default=None, foreign_key="workflow.id")


# One run of a plan: its settings, and what became of it.
class PlanEntry(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("plan_id", "position"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    plan_id: int = Field(foreign_key="runplan.id", index=True)
    position: int
    title: str = Field(default="", max_length=200)
    run_class: str = Field(default=RunClass.TEST.value, max_length=8)
    # The config's name (as `daqflow configs list` shows it); None: keep the current one.
    config: Optional[str] = Field(default=None, max_length=700)
    duration_seconds: Optional[float] = Field(default=None)
    max_bytes: Optional[int] = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    comment: str = Field(default="", max_length=1000)
    fields: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False,
                                                                 server_default="{}"))
    # An EntryState; the state the DAQ goes down to for its config (None: no change).
    state: str = Field(default=EntryState.PENDING.value, max_length=16)
    down_to: Optional[int] = Field(default=None)
    run_id: Optional[int] = Field(default=None, foreign_key="run.id")
    started_at: Optional[datetime] = timestamp()
    finished_at: Optional[datetime] = timestamp()
    error: Optional[str] = Field(default=None, max_length=2000)
