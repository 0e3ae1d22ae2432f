"""Checking what a page's form or an API body asks for, before anything is planned."""
from __future__ import annotations

import re

from models.vocabulary import RunClass

TITLE_MAX = 200
# Printable text only: titles end up in logs, file listings and the ELOG.
TITLE_PATTERN = re.compile(r"^[^\x00-\x1f\x7f]*$")


class Invalid(ValueError):
    """Malformed input (HTTP 400); the message says which field and why."""


def parse_start(data: dict) -> tuple[str, str]:
    """Check a run start's fields: ``title`` (text) and ``run_class`` (from the list)."""
    unknown = set(data) - {"title", "run_class"}
    if unknown:
        raise Invalid(f"unknown field(s): {', '.join(sorted(unknown))}")
    title = data.get("title", "")
    run_class = data.get("run_class", RunClass.TEST.value)
    if not isinstance(title, str):
        raise Invalid("title must be text")
    title = title.strip()
    if len(title) > TITLE_MAX:
        raise Invalid(f"title is longer than {TITLE_MAX} characters")
    if not TITLE_PATTERN.match(title):
        raise Invalid("title holds control characters")
    if not isinstance(run_class, str) or run_class not in tuple(RunClass):
        raise Invalid(f"run_class must be one of {', '.join(RunClass)}")
    return title, run_class
