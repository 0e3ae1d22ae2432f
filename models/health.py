"""The DAQ's health over time, and the alarms that wake the shift."""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import BigInteger, Column, Index, text
from sqlmodel import Field, SQLModel

from models.columns import timestamp


# One node check of one data router: its staging directory's .graw files and bytes, the
# write rate since the previous check, and the free space of its filesystem. Kept for
# DAQFLOW_HEALTH_RETENTION_DAYS.
class RouterSample(SQLModel, table=True):
    __table_args__ = (Index("ix_routersample_router_at", "router", "at"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    # The data router's name; names outlive topology reloads.
    router: str = Field(max_length=200)
    at: datetime = timestamp(now=True)
    files: Optional[int] = Field(default=None)
    # 64-bit: a staging disk holds terabytes.
    bytes: Optional[int] = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    # Bytes per second written since the previous sample (None: no previous one).
    rate: Optional[float] = Field(default=None)
    free_bytes: Optional[int] = Field(default=None, sa_column=Column(BigInteger, nullable=True))


# One alarm: raised once when its condition starts to hold, cleared when it stops holding,
# active until then and until an operator acknowledged it; kept as history.
class Alarm(SQLModel, table=True):
    # One open (not yet cleared) alarm per condition: two beat ticks cannot raise it twice.
    __table_args__ = (Index("ix_alarm_open", "kind", "subject", unique=True,
                            sqlite_where=text("cleared_at IS NULL"),
                            postgresql_where=text("cleared_at IS NULL")),)
    id: Optional[int] = Field(default=None, primary_key=True)
    # An AlarmKind, and what it is about (a router, a server, a workflow).
    kind: str = Field(index=True, max_length=32)
    subject: str = Field(max_length=200)
    message: str = Field(max_length=2000)
    raised_at: datetime = timestamp(now=True)
    cleared_at: Optional[datetime] = timestamp()
    acked_at: Optional[datetime] = timestamp()
    acked_by: Optional[str] = Field(default=None, max_length=80)
    # The last notification sent (first or reminder), and why the last one failed.
    notified_at: Optional[datetime] = timestamp()
    notify_error: Optional[str] = Field(default=None, max_length=2000)
    # The channels ("email", "webhook") that took the notification under way, while another
    # still fails: its retry sends only what is missing.
    delivered: Optional[str] = Field(default=None, max_length=64)
    # What the alarm did itself ([alarms] stop_run_on): the run it stopped, or why not.
    action: Optional[str] = Field(default=None, max_length=2000)


# An ECC server's reachability and state, written when a watch finds them changed (a state
# holds until the next sample says otherwise); kept for DAQFLOW_HEALTH_RETENTION_DAYS.
class EccSample(SQLModel, table=True):
    __table_args__ = (Index("ix_eccsample_server_at", "server", "at"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    # The ECC server's name; names outlive topology reloads.
    server: str = Field(max_length=200)
    at: datetime = timestamp(now=True)
    online: bool
    # The ECC state GetState answered (None: offline), and the one a transition leads to.
    state: Optional[int] = Field(default=None)
    transition: Optional[int] = Field(default=None)
    error: Optional[str] = Field(default=None, max_length=500)
