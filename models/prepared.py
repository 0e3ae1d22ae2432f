"""Statements run for every step of a start, compiled once per database and run on the
driver's cursor.

SQLAlchemy's execution of an already compiled statement (its cache key, execution
context, result set-up) cost several times what the database itself did for the few
short statements each of a start's hundreds of steps runs. A ``Prepared`` statement
is compiled by SQLAlchemy once per dialect, with its values converted by the column
types' own processors, so it sends what SQLAlchemy would send; only the per-execution
machinery is skipped, the engine's cursor events with it (a listener on
``before_cursor_execute`` does not see these statements). It runs inside a transaction
of ``models.db.transaction()`` (or on a session's connection), and is for statements of
plain columns only. The driver's errors come out as SQLAlchemy's (``OperationalError``
and the rest), which the tasks retry.
"""
from __future__ import annotations

import threading
from collections import namedtuple

from sqlalchemy.exc import ArgumentError, InvalidRequestError

from models.db import driver_error

_REQUIRED = object()


def _parameters(compiled, dialect):
    """How one execution's values become what the driver takes, worked out once: for each
    placeholder in order, the value named by its ``bindparam`` key (or the constant the
    statement holds) through its type's own conversion. SQLAlchemy's ``construct_params``
    did the same at every execution, a tenth of a step's database CPU (py-spy, N = 64)."""
    plan = []
    for bind, name in compiled.bind_names.items():
        if bind.expanding or bind.callable is not None:
            raise ArgumentError(f"{name}: a Prepared statement takes no IN list or callable")
        convert = bind.type.dialect_impl(dialect).bind_processor(dialect)
        default = _REQUIRED if bind.required else bind.value
        if default is not _REQUIRED and convert is not None:
            default = convert(default)
        plan.append((name, bind.key, default, convert))
    positions = compiled.positiontup

    def values_of(values: dict) -> dict:
        out = {}
        for name, key, default, convert in plan:
            if key in values:
                value = values[key]
                out[name] = value if convert is None else convert(value)
            elif default is _REQUIRED:
                raise InvalidRequestError(f"a value is required for bind parameter {key!r}")
            else:
                out[name] = default
        return out

    if positions is None:
        return values_of
    return lambda values: tuple(map(values_of(values).__getitem__, positions))


class Prepared:
    """One statement, compiled once per dialect, run on a connection's driver cursor."""

    def __init__(self, statement):
        self.statement = statement
        self._compiled: dict[tuple, tuple] = {}
        self._lock = threading.Lock()

    def _for(self, dialect) -> tuple:
        # Per database and driver: their SQL and placeholders differ.
        key = (dialect.name, dialect.driver, dialect.paramstyle)
        found = self._compiled.get(key)
        if found is not None:
            return found
        with self._lock:
            found = self._compiled.get(key)  # another thread compiled it while this waited
            if found is None:
                compiled = self.statement.compile(dialect=dialect)
                row = None
                if self.statement.is_select:
                    columns = list(self.statement.selected_columns)
                    # The converters wait for the first answer: some types' depend on the
                    # type the driver says it read (PostgreSQL's numbers).
                    row = (namedtuple("Row", [column.key for column in columns]),
                           [column.type.dialect_impl(dialect) for column in columns], [])
                found = self._compiled[key] = (compiled.string, _parameters(compiled, dialect),
                                               row)
        return found

    def _cursor(self, c, values: dict):
        sql, parameters, row = self._for(c.dialect)
        params = parameters(values)  # a value its column refuses raises here, as it is
        cursor = c.connection.dbapi_connection.cursor()
        try:
            cursor.execute(sql, params)
        except BaseException as exc:
            cursor.close()
            if isinstance(exc, c.dialect.loaded_dbapi.Error):
                raise driver_error(c.dialect, exc) from exc
            raise
        return cursor, row

    def first(self, c, values: dict):
        """The first row of a SELECT (fields by name, converted by their types), or None."""
        rows = self._rows(c, values, lambda cursor: cursor.fetchmany(1))
        return rows[0] if rows else None

    def all(self, c, values: dict | None = None) -> list:
        """Every row of a SELECT, as ``first`` reads one."""
        return self._rows(c, values or {}, lambda cursor: cursor.fetchall())

    def _rows(self, c, values: dict, fetch) -> list:
        cursor, (row_type, types, converters) = self._cursor(c, values)
        try:
            found = fetch(cursor)
            if found and not converters:
                converters[:] = [kind.result_processor(c.dialect, described[1])
                                 for kind, described in zip(types, cursor.description)]
        finally:
            cursor.close()
        if any(convert is not None for convert in converters):
            return [row_type(*(value if convert is None else convert(value)
                               for convert, value in zip(converters, row))) for row in found]
        return [row_type(*row) for row in found]

    def run(self, c, values: dict) -> int:
        """Run an UPDATE (or another statement with no rows); the rows it matched."""
        cursor, _ = self._cursor(c, values)
        try:
            return cursor.rowcount
        finally:
            cursor.close()
