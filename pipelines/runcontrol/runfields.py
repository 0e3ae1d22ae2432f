"""Custom run fields: their definitions per experiment, and the values a start, a stop or a
later edit gives them, checked before anything is written.

Values are stored by field name in ``Run.fields``: a number as a float, text and
choices as text. The topology file defines the fields; operators may change them on
the Run fields page (audited) until the next ``topology load``.
"""
from __future__ import annotations

import math

from pydantic import ValidationError
from sqlmodel import select

from models import Experiment, Run, session
from models.daq import active_experiment as active_or_none
from models.runlog import RunField
from models.vocabulary import FieldType, RunMoment
from pipelines.runcontrol import accounts
from pipelines.runcontrol.errors import Invalid, NotFound
from pipelines.runcontrol.texts import operator_text
from pipelines.topology.loading import write_run_fields
from pipelines.topology.schema import RunFieldSpec

# A text field's value: a line of a run sheet.
TEXT_MAX = 200


def active_experiment(s) -> Experiment:
    """The experiment runs are recorded in, or NotFound before any topology was loaded."""
    experiment = active_or_none(s)
    if experiment is None:
        raise NotFound("no active experiment: load a topology first")
    return experiment


def definitions(s) -> list[RunField]:
    """The active experiment's custom run fields, in their order ([] without an experiment)."""
    experiment = active_or_none(s)
    if experiment is None:
        return []
    return list(s.exec(select(RunField).where(RunField.experiment_id == experiment.id)
                       .order_by(RunField.position)).all())


def describe(field: RunField) -> dict:
    """A field's definition as the API and the forms show it."""
    return {"name": field.name, "type": field.type, "unit": field.unit,
            "choices": list(field.choices), "asked_at": field.asked_at,
            "required": field.required}


def described() -> list[dict]:
    """The active experiment's custom run fields, described (for the forms and the API)."""
    with session() as s:
        return [describe(field) for field in definitions(s)]


def _value(field: RunField, value: object) -> float | str:
    where = f"field {field.name!r}"
    if field.type == FieldType.NUMBER:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise Invalid(f"{where} must be a number")
        try:
            number = float(value)
        except ValueError:
            raise Invalid(f"{where} must be a number, not {str(value)[:40]!r}") from None
        if not math.isfinite(number):
            raise Invalid(f"{where} must be a finite number")
        return number
    text = operator_text(where, value, TEXT_MAX)
    if field.type == FieldType.CHOICE and text not in field.choices:
        raise Invalid(f"{where} must be one of: {', '.join(field.choices)}")
    return text


def check_values(fields: list[RunField], values: object,
                 moment: RunMoment | None = None) -> dict:
    """``values`` checked against the definitions; Invalid names the first problem.

    ``moment`` is the form that gives them: a start or stop takes only the fields
    asked at it, and every required one of them; an edit (None) takes any field
    and requires none. An empty text or choice removes the value.
    """
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise Invalid("fields must be an object of field names and values")
    by_name = {field.name: field for field in fields}
    unknown = [name for name in values if name not in by_name]
    if unknown:
        defined = ", ".join(by_name) or "none is defined"
        raise Invalid(f"no run field named {str(unknown[0])[:64]!r} (defined: {defined})")
    checked = {}
    for name, value in values.items():
        field = by_name[name]
        if moment is not None and field.asked_at != moment:
            raise Invalid(f"field {name!r} is asked at the run's {field.asked_at}, "
                          f"not its {moment}")
        if value is None or (isinstance(value, str) and not value.strip()):
            checked[name] = None
            continue
        checked[name] = _value(field, value)
    if moment is not None:
        missing = [field.name for field in fields if field.asked_at == moment and field.required
                   and checked.get(field.name) is None]
        if missing:
            raise Invalid(f"the run's {moment} needs field(s): {', '.join(missing)}")
    return checked


def merged(current: dict, changes: dict) -> dict:
    """A run's fields with ``changes`` applied (None removes a value)."""
    out = dict(current or {})
    for name, value in changes.items():
        if value is None:
            out.pop(name, None)
        else:
            out[name] = value
    return out


def previous_values(lookback: int = 20) -> dict:
    """Each field's value in the latest run that has one: the forms offer them ("same as
    the previous run"); a stop field comes from the runs before the one being stopped."""
    with session() as s:
        runs = s.exec(select(Run.fields).order_by(Run.id.desc()).limit(lookback)).all()
    out: dict = {}
    for fields in reversed(runs):
        out.update(fields or {})
    return out


def save_definition(spec: dict, actor: str, previous_name: str | None = None) -> None:
    """Add a field, or change the one named ``previous_name``; audited. Invalid if bad."""
    try:
        checked = RunFieldSpec.model_validate(spec)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise Invalid(f"{where + ': ' if where else ''}"
                      f"{first['msg'].removeprefix('Value error, ')}") from None
    with session() as s:
        experiment = active_experiment(s)
        specs = [RunFieldSpec.model_validate(describe(field)) for field in definitions(s)]
        names = [field.name for field in specs]
        if previous_name is not None and previous_name not in names:
            raise NotFound(f"no run field named {previous_name!r}")
        if checked.name in names and checked.name != previous_name:
            raise Invalid(f"a run field named {checked.name!r} exists already")
        if previous_name is None:
            specs.append(checked)
        else:
            specs[names.index(previous_name)] = checked
        write_run_fields(s, experiment.id, specs)
        accounts.record(s, actor, "run_field", field=checked.name, was=previous_name,
                        definition=checked.model_dump())


def remove_definition(name: str, actor: str) -> None:
    """Stop asking for a field (runs keep their values); audited."""
    with session() as s:
        experiment = active_experiment(s)
        specs = [RunFieldSpec.model_validate(describe(field)) for field in definitions(s)]
        if name not in [spec.name for spec in specs]:
            raise NotFound(f"no run field named {name!r}")
        write_run_fields(s, experiment.id, [spec for spec in specs if spec.name != name])
        accounts.record(s, actor, "run_field_removed", field=name)
