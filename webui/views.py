"""What the page blueprints share: input checks, error mapping, template filters."""
from __future__ import annotations

import re
from datetime import datetime

from pipelines.workflows import RUN_CLASSES, NotFound, Refused, Unavailable

TITLE_MAX = 200
# Printable text only: titles end up in logs, file listings and the ELOG.
TITLE_PATTERN = re.compile(r"^[^\x00-\x1f\x7f]*$")
TRANSITIONS = ("describe", "prepare", "configure", "reset")


class Invalid(ValueError):
    """Malformed input (HTTP 400); the message says which field and why."""


def parse_start(data: dict) -> tuple[str, str]:
    """Check a run start's fields: ``title`` (text) and ``run_class`` (from the list)."""
    unknown = set(data) - {"title", "run_class"}
    if unknown:
        raise Invalid(f"unknown field(s): {', '.join(sorted(unknown))}")
    title = data.get("title", "")
    run_class = data.get("run_class", "TEST")
    if not isinstance(title, str):
        raise Invalid("title must be text")
    title = title.strip()
    if len(title) > TITLE_MAX:
        raise Invalid(f"title is longer than {TITLE_MAX} characters")
    if not TITLE_PATTERN.match(title):
        raise Invalid("title holds control characters")
    if not isinstance(run_class, str) or run_class not in RUN_CLASSES:
        raise Invalid(f"run_class must be one of {', '.join(RUN_CLASSES)}")
    return title, run_class


def error_status(exc: Exception) -> int:
    """The HTTP status for a refusal, a missing thing, bad input, or no broker."""
    return {Refused: 409, NotFound: 404, Invalid: 400, Unavailable: 503}.get(type(exc), 500)


def refusal(exc: Exception):
    """An error answer htmx swaps into the page's message box instead of its target."""
    return refusal_message(str(exc), error_status(exc))


def refusal_message(message: str, status: int):
    """``message`` with ``status``, for the page's message box (htmx retargets it there)."""
    from flask import make_response, render_template

    response = make_response(render_template("runcontrol/_message.html", message=message),
                             status)
    response.headers["HX-Retarget"] = "#message"
    response.headers["HX-Reswap"] = "innerHTML"
    return response


def _clock(value: str | datetime | None) -> str:
    if not value:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    value = int(value)
    hours, rest = divmod(value, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _percent(value: float | None) -> int:
    return int(round((value or 0) * 100))


def _size(value: int | None) -> str:
    if value is None:
        return ""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return ""


def register_filters(app) -> None:
    """Template filters for times, durations, percentages and sizes."""
    app.jinja_env.filters.update(clock=_clock, hms=_seconds, percent=_percent, size=_size)
