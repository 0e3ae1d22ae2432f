"""The run log: custom run fields per experiment, and every version of a run's note."""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from models.columns import timestamp
from models.vocabulary import FieldType, RunMoment


# One custom run field of an experiment (attpc-daq's "observables": beam intensity, gas
# pressure, target), asked for by the start or the stop form and kept with every run.
class RunField(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("experiment_id", "name"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    experiment_id: int = Field(foreign_key="experiment.id", index=True)
    name: str = Field(max_length=64)
    # A FieldType; a number's unit ("pps", "Torr"), a choice's options.
    type: str = Field(default=FieldType.TEXT.value, max_length=8)
    unit: str = Field(default="", max_length=32)
    choices: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # A RunMoment: the form that asks for it; a required field must be given there.
    asked_at: str = Field(default=RunMoment.START.value, max_length=8)
    required: bool = Field(default=False)
    # Order of the columns and form inputs.
    position: int = Field(default=0)


# One version of a run's note: the run keeps the current text, this table every edit.
class RunNote(SQLModel, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id", index=True)
    text: str = Field(max_length=4000)
    author: str = Field(max_length=80)
    written_at: datetime = timestamp(now=True)
