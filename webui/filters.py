"""Template filters: times, durations, percentages and sizes as a shift reads them."""
from __future__ import annotations

from datetime import datetime, timezone


def clock(value: str | datetime | None) -> str:
    if not value:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def hms(value: float | None) -> str:
    if value is None:
        return ""
    value = int(value)
    hours, rest = divmod(value, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def seconds(value: float | None) -> str:
    """A short duration in seconds: tenths under 10 s (a 0.2 s transition is not "0 s")."""
    if value is None:
        return ""
    return f"{value:.1f} s" if value < 10 else f"{int(value)} s"


def percent(value: float | None) -> int:
    return int(round((value or 0) * 100))


def size(value: int | None) -> str:
    if value is None:
        return ""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return ""


def ago(value: str | datetime | None) -> str:
    """How long ago ``value`` was, as the page first shows it (the browser counts on)."""
    if not value:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    seconds = max(0, int((datetime.now(timezone.utc) - value).total_seconds()))
    return f"{hms(seconds)} ago" if seconds >= 60 else f"{seconds} s ago"


def register_filters(app) -> None:
    """Template filters for times, durations, percentages and sizes."""
    app.jinja_env.filters.update(clock=clock, hms=hms, seconds=seconds, percent=percent,
                                 size=size, ago=ago)
