"""The statements every post runs, compiled once per dialect and run on the DBAPI cursor.

SQLAlchemy's work per execution (cache key, result objects, bind processing) was most of
the group-commit writer's database time (measured with py-spy and cProfile). A
`FastStatement` skips it: the values still go through each column type's own bind
processor, so rows are stored exactly as the ORM stores them, and driver errors are raised
as SQLAlchemy's, like any other statement's. Callers see one method, `run`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Dialect, Executable
from sqlalchemy.exc import DBAPIError


@dataclass(frozen=True)
class _Compiled:
    sql: str
    processors: dict[str, Callable[[Any], Any]]
    constants: dict[str, Any]  # the values written into the statement ("moderated")


class FastStatement:
    """A statement run in the transaction the caller's Connection has begun."""

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._by_dialect: dict[str, _Compiled] = {}

    def run(self, conn: Connection, values: dict[str, Any]) -> Any:
        """Execute with `values`; the DBAPI cursor, to fetch the rows from."""
        dialect = conn.dialect
        compiled = self._by_dialect.get(dialect.name) or self._compile(dialect)
        params = {**compiled.constants, **values}
        for name, process in compiled.processors.items():
            params[name] = process(params[name])
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(compiled.sql, params)
        except dialect.loaded_dbapi.Error as exc:
            raise DBAPIError.instance(compiled.sql, params, exc, dialect.loaded_dbapi.Error,
                                      dialect=dialect) from exc
        return cursor

    def _compile(self, dialect: Dialect) -> _Compiled:
        # Named parameters on every dialect, so one dict of values serves them all.
        named = type(dialect)(paramstyle="named") if dialect.positional else dialect
        compiled = self.statement.compile(dialect=named)
        processors = {}
        for name, bind in compiled.binds.items():
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                processors[name] = process
        constants = {name: bind.value for name, bind in compiled.binds.items()
                     if not bind.required}
        self._by_dialect[dialect.name] = _Compiled(compiled.string, processors, constants)
        return self._by_dialect[dialect.name]
