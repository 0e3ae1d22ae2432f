"""A run plan as an operator writes it (a TOML file, the page's text box) or a script posts
it (JSON), checked entry by entry before anything is written."""
from __future__ import annotations

import tomllib

from models import session
from models.vocabulary import RunClass, RunMoment
from pipelines.runcontrol import launching, runfields
from pipelines.runcontrol.errors import Invalid
from pipelines.runcontrol.texts import duration_seconds, operator_text, size_bytes

MAX_ENTRIES = 200


def check_plan(data: object) -> dict:
    """A plan as posted (JSON) or read (TOML), checked; Invalid names the entry and key."""
    if not isinstance(data, dict) or set(data) - {"name", "entries"}:
        raise Invalid("a plan is an object with a name and its entries")
    name = operator_text("name", data.get("name", ""), 200) or "run plan"
    entries = data.get("entries")
    if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_ENTRIES:
        raise Invalid(f"entries must be a list of 1 to {MAX_ENTRIES} runs")
    with session() as s:
        definitions = runfields.definitions(s)
    return {"name": name, "entries": [_entry(i, raw, definitions)
                                      for i, raw in enumerate(entries, 1)]}


def _entry(position: int, raw: object, definitions) -> dict:
    where = f"entry {position}"
    keys = {"title", "run_class", "config", "duration", "duration_seconds", "max_size",
            "max_bytes", "comment", "fields"}
    if not isinstance(raw, dict) or set(raw) - keys:
        unknown = sorted(set(raw) - keys) if isinstance(raw, dict) else []
        raise Invalid(f"{where}: an object with {', '.join(sorted(keys))}"
                      + (f" (not {', '.join(map(str, unknown))[:200]})" if unknown else ""))
    try:
        duration = raw.get("duration_seconds")
        if "duration" in raw:
            duration = duration_seconds("duration", raw["duration"])
        size = raw.get("max_bytes")
        if "max_size" in raw:
            size = size_bytes("max_size", raw["max_size"])
        limits = launching.check_limits(duration, size)
        if not limits:
            raise Invalid("give a duration or a max_size: a plan's run must end by itself")
        config = raw.get("config")
        if config is not None:
            config = operator_text("config", config, 700) or None
        return {"title": operator_text("title", raw.get("title", ""), launching.TITLE_MAX),
                "run_class": launching.check_run_class(raw.get("run_class", RunClass.TEST)),
                "config": config, "duration_seconds": limits.get("duration_seconds"),
                "max_bytes": limits.get("max_bytes"),
                "comment": operator_text("comment", raw.get("comment", ""),
                                         launching.COMMENT_MAX),
                "fields": runfields.check_values(definitions, raw.get("fields"),
                                                 RunMoment.START)}
    except Invalid as exc:
        raise Invalid(f"{where}: {exc}") from None


def read_toml(text: str) -> dict:
    """A plan file: ``name``, then ``[[entries]]`` with ``title``, ``run_class``, ``config``,
    ``duration = "30m"`` and/or ``max_size = "20GB"``, ``comment``, ``fields``."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise Invalid(f"not valid TOML: {exc}") from None
