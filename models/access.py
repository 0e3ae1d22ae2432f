"""Who may do what: accounts with their role and API token, and the audit of actions."""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from models.columns import timestamp
from models.vocabulary import Role


# A person (or script) who may log in: viewers see everything, operators also act.
class Account(SQLModel, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=64)
    role: str = Field(default=Role.VIEWER.value, max_length=16)
    # werkzeug's salted scrypt hash; the password itself is never stored.
    password_hash: str = Field(max_length=255)
    # SHA-256 of the account's API token: tokens are random, so a fast hash suffices
    # and lets a request find its account by one indexed lookup.
    token_hash: Optional[str] = Field(default=None, index=True, unique=True, max_length=64)
    created_at: datetime = timestamp(now=True)


# One action someone took (start, stop, transition, replay, node check, account change).
class AuditEntry(SQLModel, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)
    at: datetime = timestamp(now=True)
    # Account name, or "cli:<login>" for the command line on the control host.
    actor: str = Field(index=True, max_length=80)
    action: str = Field(max_length=32)
    workflow_id: Optional[int] = Field(default=None, foreign_key="workflow.id", index=True)
    # The run a note or field edit concerns (a start or stop names its workflow instead).
    run_id: Optional[int] = Field(default=None, foreign_key="run.id", index=True)
    # What was asked for (title, run class, replayed steps), kept for the record.
    detail: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


# One browser's login: its signed cookie names it, and logging out ends it here, so a copy
# of the cookie is worth nothing afterwards.
class LoginSession(SQLModel, table=True):
    # Random; the session cookie carries it.
    id: str = Field(primary_key=True, max_length=64)
    account_id: int = Field(foreign_key="account.id", index=True)
    created_at: datetime = timestamp(now=True)
    # Set at logout (or when the account's password changes); None while it may be used.
    ended_at: Optional[datetime] = timestamp()
