"""Timestamps: every one daqflow stores is aware UTC, on SQLite as on PostgreSQL."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Column, DateTime
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field


def utcnow() -> datetime:
    """Now, as an aware UTC datetime (every timestamp daqflow stores)."""
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """A timestamp with time zone that always reads back as aware UTC.

    PostgreSQL keeps the zone; SQLite drops it, so values are normalised to UTC
    on the way in and marked UTC on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where a time zone is required")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value, dialect):
        if value is None or value.tzinfo is not None:
            return value
        return value.replace(tzinfo=timezone.utc)


def timestamp(now: bool = False) -> Any:
    """A timestamp field: empty until set, or (``now``) required and set when the row is made."""
    if now:
        return Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
