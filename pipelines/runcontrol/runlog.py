"""The run log: every run of the active experiment with its sheet (title, class, comment,
note, custom fields), who started and stopped it, its files and its outcome; filters,
pages and the exports; a run's whole story; notes and field edits, audited, every
version kept.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import func, or_
from sqlmodel import select

from models import AuditEntry, Run, RunFiles, Workflow, session
from models.runlog import RunNote
from models.vocabulary import FilesKind, RunClass, RunOutcome
from pipelines.runcontrol import accounts, runfields
from pipelines.runcontrol.errors import Invalid, NotFound
from pipelines.runcontrol.launching import NOTE_MAX, check_run_class
from pipelines.runcontrol.records.runs import add_note_version
from pipelines.runcontrol.texts import operator_text

PER_PAGE, PER_PAGE_MAX = 50, 500
SEARCH_MAX = 200
# The columns of the exports and of the Runs page, before the custom fields.
COLUMNS = ("number", "title", "run_class", "config", "started_at", "stopped_at",
           "duration_seconds", "started_by", "stopped_by", "comment", "note", "files", "bytes",
           "outcome")


@dataclass(frozen=True)
class RunFilter:
    """Which runs a list shows: class, start dates (UTC, inclusive), text, page."""

    run_class: str | None = None
    since: date | None = None
    until: date | None = None
    text: str = ""
    page: int = 1
    per_page: int = PER_PAGE


def _date(name: str, value: object) -> date | None:
    if value in (None, ""):
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise Invalid(f"{name} must be a date like 2026-11-23") from None


def _int(name: str, value: object, default: int, low: int, high: int) -> int:
    if value in (None, ""):
        return default
    try:
        number = int(str(value))
    except ValueError:
        raise Invalid(f"{name} must be a whole number") from None
    if not low <= number <= high:
        raise Invalid(f"{name} must be between {low} and {high}")
    return number


FILTER_KEYS = ("run_class", "since", "until", "q", "page", "per_page")


def parse_filter(args: dict) -> RunFilter:
    """A RunFilter from query arguments (``run_class``, ``since``, ``until``, ``q``,
    ``page``, ``per_page``); Invalid for anything else or a bad value."""
    unknown = sorted(set(args) - set(FILTER_KEYS))
    if unknown:
        raise Invalid(f"unknown parameter(s): {', '.join(unknown)[:200]}; "
                      f"use {', '.join(FILTER_KEYS)}")
    run_class = args.get("run_class") or None
    return RunFilter(
        run_class=check_run_class(run_class) if run_class else None,
        since=_date("since", args.get("since")), until=_date("until", args.get("until")),
        text=operator_text("q", args.get("q", ""), SEARCH_MAX),
        page=_int("page", args.get("page"), 1, 1, 10**6),
        per_page=_int("per_page", args.get("per_page"), PER_PAGE, 1, PER_PAGE_MAX))


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=timezone.utc)


def _query(s, experiment_id: int, flt: RunFilter):
    query = select(Run).where(Run.experiment_id == experiment_id)
    if flt.run_class:
        query = query.where(Run.run_class == flt.run_class)
    if flt.since:
        query = query.where(Run.started_at >= _midnight(flt.since))
    if flt.until:
        query = query.where(Run.started_at < _midnight(flt.until + timedelta(days=1)))
    if flt.text:
        needle = flt.text.lower()
        query = query.where(or_(*(func.lower(column).contains(needle, autoescape=True)
                                  for column in (Run.title, Run.comment, Run.note))))
    return query


def outcome(run: Run) -> RunOutcome:
    """Going, stopped with its files not (yet) organized, or complete."""
    if run.stopped_at is None:
        return RunOutcome.GOING
    return RunOutcome.COMPLETE if run.files_organized_at else RunOutcome.FILES_NOT_ORGANIZED


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _row(run: Run, files: tuple[int, int]) -> dict:
    return {"number": run.number, "title": run.title, "run_class": run.run_class,
            "config": run.config_name, "started_at": _iso(run.started_at),
            "stopped_at": _iso(run.stopped_at), "duration_seconds": run.duration_seconds,
            "started_by": run.started_by, "stopped_by": run.stopped_by,
            "comment": run.comment, "note": run.note, "files": files[0], "bytes": files[1],
            "outcome": outcome(run).value, "fields": dict(run.fields)}


def _data_totals(s, run_ids: list[int]) -> dict[int, tuple[int, int]]:
    rows = s.exec(select(RunFiles.run_id, func.sum(RunFiles.files), func.sum(RunFiles.bytes))
                  .where(RunFiles.run_id.in_(run_ids), RunFiles.kind == FilesKind.DATA.value)
                  .group_by(RunFiles.run_id)).all()
    return {run_id: (int(files or 0), int(size or 0)) for run_id, files, size in rows}


def list_runs(flt: RunFilter = RunFilter(), everything: bool = False) -> dict:
    """One page of runs, newest first (``everything``: all of them, for an export), with
    the total and the custom fields' definitions."""
    fields = runfields.described()
    with session() as s:
        try:
            experiment = runfields.active_experiment(s)
        except NotFound:
            return {"runs": [], "total": 0, "page": flt.page, "per_page": flt.per_page,
                    "fields": fields}
        query = _query(s, experiment.id, flt)
        total = s.exec(select(func.count()).select_from(query.subquery())).one()
        query = query.order_by(Run.number.desc())
        if not everything:
            query = query.offset((flt.page - 1) * flt.per_page).limit(flt.per_page)
        runs = s.exec(query).all()
        totals = _data_totals(s, [run.id for run in runs])
        rows = [_row(run, totals.get(run.id, (0, 0))) for run in runs]
    return {"runs": rows, "total": total, "page": flt.page, "per_page": flt.per_page,
            "fields": fields}


def csv_text(listing: dict) -> str:
    """A listing as CSV: the run sheet's columns, then one column per custom field."""
    names = [field["name"] for field in listing["fields"]]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(list(COLUMNS) + names)
    for row in listing["runs"]:
        writer.writerow([_cell(row[column]) for column in COLUMNS]
                        + [_cell(row["fields"].get(name)) for name in names])
    return out.getvalue()


def _cell(value: object) -> object:
    # A spreadsheet runs a cell that starts with = + - @ as a formula: an operator's
    # title must not become one.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


def _run_or_404(s, number: int) -> Run:
    experiment = runfields.active_experiment(s)
    run = s.exec(select(Run).where(Run.experiment_id == experiment.id,
                                   Run.number == number)).first()
    if run is None:
        raise NotFound(f"no run {number} in experiment {experiment.name}")
    return run


def run_detail(number: int) -> dict:
    """One run: its row, the note's history, its workflows, files per data router, config
    backups, and the audit entries that concern it."""
    with session() as s:
        run = _run_or_404(s, number)
        files = s.exec(select(RunFiles).where(RunFiles.run_id == run.id)
                       .order_by(RunFiles.kind, RunFiles.target)).all()
        data = [f for f in files if f.kind == FilesKind.DATA]
        view = _row(run, (sum(f.files for f in data), sum(f.bytes for f in data)))
        notes = s.exec(select(RunNote).where(RunNote.run_id == run.id)
                       .order_by(RunNote.id.desc())).all()
        workflows = s.exec(select(Workflow).where(Workflow.run_id == run.id)
                           .order_by(Workflow.id)).all()
        workflow_ids = [workflow.id for workflow in workflows]
        audit = s.exec(select(AuditEntry).where(or_(
            AuditEntry.run_id == run.id, AuditEntry.workflow_id.in_(workflow_ids or [-1])))
            .order_by(AuditEntry.id)).all()
        view.update(
            server_configs=dict(run.server_configs),
            notes=[{"text": n.text, "author": n.author, "written_at": _iso(n.written_at)}
                   for n in notes],
            workflows=[{"id": w.id, "kind": w.kind, "state": w.state,
                        "created_at": _iso(w.created_at), "finished_at": _iso(w.finished_at)}
                       for w in workflows],
            data=[_files(f) for f in data],
            config_backups=[_files(f) for f in files if f.kind == FilesKind.CONFIGS],
            audit=[{"at": _iso(a.at), "actor": a.actor, "action": a.action,
                    "workflow_id": a.workflow_id, "detail": a.detail} for a in audit])
    return view


def _files(row: RunFiles) -> dict:
    return {"target": row.target, "node": row.node, "folder": row.folder, "files": row.files,
            "bytes": row.bytes, "recorded_at": _iso(row.recorded_at)}


EDIT_KEYS = ("note", "fields")


def edit(number: int, changes: object, actor: str | None) -> dict:
    """Change a run's note and/or custom fields (``{"note", "fields"}``); audited.

    Everything is checked before anything is written: Invalid names the first
    problem and leaves the run as it was. ``actor`` defaults to the command line's
    user. Returns the run's detail.
    """
    actor = actor or accounts.local_actor()
    if not isinstance(changes, dict):
        raise Invalid("send an object with note and/or fields")
    unknown = sorted(set(changes) - set(EDIT_KEYS))
    if unknown:
        raise Invalid(f"unknown field(s): {', '.join(unknown)[:200]}; a run's note and fields "
                      "may be changed")
    note = None
    if "note" in changes:
        note = operator_text("note", changes["note"], NOTE_MAX)
    with session() as s:
        run = _run_or_404(s, number)
        values = runfields.check_values(runfields.definitions(s), changes.get("fields"))
        detail: dict = {"run_number": number}
        if note is not None and note != run.note:
            add_note_version(s, run, note, actor)
            detail["note"] = note
        if values:
            run.fields = runfields.merged(run.fields, values)
            detail["fields"] = values
        if len(detail) > 1:
            accounts.record(s, actor, "run_edit", run_id=run.id, **detail)
    return run_detail(number)


def classes() -> list[str]:
    """The run classes, for the filter."""
    return list(RunClass)
