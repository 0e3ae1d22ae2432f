"""Checking what a page's form or an API body asks for, before anything is planned."""
from __future__ import annotations

from models.vocabulary import RunClass
from pipelines.runcontrol.errors import Invalid
from pipelines.runcontrol.launching import TITLE_MAX, check_run_class
from pipelines.runcontrol.texts import operator_text


def parse_start(data: dict) -> tuple[str, str]:
    """Check a run start's fields: ``title`` (text) and ``run_class`` (from the list)."""
    unknown = set(data) - {"title", "run_class"}
    if unknown:
        raise Invalid(f"unknown field(s): {', '.join(sorted(unknown))}")
    title = operator_text("title", data.get("title", ""), TITLE_MAX)
    return title, check_run_class(data.get("run_class", RunClass.TEST.value))
