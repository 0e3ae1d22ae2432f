"""Checking what a page's form or an API body asks for, before anything is planned."""
from __future__ import annotations

from models.vocabulary import RunClass
from pipelines.runcontrol.errors import Invalid
from pipelines.runcontrol.launching import TITLE_MAX, check_limits, check_run_class
from pipelines.runcontrol.texts import duration_seconds, operator_text, size_bytes

# A form names a custom run field's input "field:<name>".
FIELD_PREFIX = "field:"


def _known(data: dict, allowed: tuple[str, ...]) -> None:
    unknown = sorted(str(key) for key in set(data) - set(allowed))
    if unknown:
        raise Invalid(f"unknown field(s): {', '.join(unknown)[:200]}")


def parse_start(data: dict) -> dict:
    """A run start's ``title`` (text), ``run_class`` (from the list), ``comment`` and
    ``fields``, as ``launch`` takes them (the sheet is checked there, against the
    experiment's run fields)."""
    _known(data, ("title", "run_class", "comment", "fields", "duration_seconds", "max_bytes",
                  "auto_restart"))
    title = operator_text("title", data.get("title", ""), TITLE_MAX)
    return {"title": title,
            "run_class": check_run_class(data.get("run_class", RunClass.TEST.value)),
            "comment": data.get("comment", ""), "fields": data.get("fields"),
            **check_limits(data.get("duration_seconds"), data.get("max_bytes"),
                           data.get("auto_restart", False))}


def limits_from_form(form: dict) -> dict:
    """A start form's ``duration`` ("30m") and ``max_gb`` text and ``auto_restart`` box, as
    the JSON API takes them."""
    out = {}
    duration = duration_seconds("duration", form.pop("duration", ""))
    size = size_bytes("max_gb", form.pop("max_gb", ""))
    if duration is not None:
        out["duration_seconds"] = duration
    if size is not None:
        out["max_bytes"] = size
    if form.pop("auto_restart", "") == "1":
        out["auto_restart"] = True
    return out


def parse_stop(data: dict) -> dict:
    """A run stop's ``note`` and ``fields``, as ``launch`` takes them."""
    _known(data, ("note", "fields"))
    return {"note": data.get("note", ""), "fields": data.get("fields")}


def from_form(form: dict) -> dict:
    """A form's fields with its ``field:<name>`` inputs gathered under ``fields``."""
    out: dict = {key: value for key, value in form.items() if not key.startswith(FIELD_PREFIX)}
    fields = {key[len(FIELD_PREFIX):]: value for key, value in form.items()
              if key.startswith(FIELD_PREFIX)}
    if fields:
        out["fields"] = fields
    return out
