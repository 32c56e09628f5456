"""Hot-path statements: built with SQLAlchemy, compiled once, run on the DBAPI cursor.

The driver's pass runs a dozen small statements per transaction, hundreds of times a second.
On SQLite, SQLAlchemy's per-execution bookkeeping cost several times the statement itself,
so a ``Prepared`` statement compiles once and then executes on the sqlite3 cursor directly
(expanding ``IN`` lists included). Elsewhere (PostgreSQL, where the network dominates) it is
an ordinary ``conn.execute``. Values must be plain: ints, floats, str, None, bool.
"""

from __future__ import annotations

import json
from collections import namedtuple
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy.engine import Connection
from sqlalchemy.sql import ClauseElement, Executable
from sqlalchemy.sql.compiler import SQLCompiler

# SQL text, bind names in placeholder order, default values, names of expanding binds
_Compiled = tuple[str, tuple[str, ...], dict[str, Any], frozenset[str]]


class Prepared:
    """One statement, executed the fast way on SQLite."""

    def __init__(self, statement: Executable, *, json_columns: Iterable[str] = ()) -> None:
        self.statement = statement
        self.json_columns = frozenset(json_columns)
        self._sqlite: _Compiled | None = None
        self._row_type: Any = None

    def execute(self, conn: Connection, params: Mapping[str, Any] | None = None) -> list[Any]:
        """Run once; returns the rows (attribute access by column name), if any."""
        if conn.dialect.name != "sqlite":
            result = conn.execute(self.statement, dict(params or {}))
            return list(result) if result.returns_rows else []
        sql, values = self._bind(conn, params or {})
        cursor = conn.connection.driver_connection.execute(sql, values)  # type: ignore[union-attr]
        if cursor.description is None:
            return []
        return self._rows(cursor.description, cursor.fetchall())

    def executemany(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> int | None:
        """Run for each parameter set (no expanding lists here); the rows changed in all, or
        None where the database does not count them for a batch."""
        if not rows:
            return 0
        if conn.dialect.name != "sqlite":
            result = conn.execute(self.statement, [dict(r) for r in rows])
            return result.rowcount if conn.dialect.supports_sane_multi_rowcount else None
        sql, order, defaults, _expanding = self._compiled(conn)
        values = [[r[n] if n in r else defaults[n] for n in order] for r in rows]
        cursor = conn.connection.driver_connection.executemany(sql, values)  # type: ignore[union-attr]
        return cursor.rowcount if cursor.rowcount >= 0 else None

    def _compiled(
        self, conn: Connection
    ) -> tuple[str, tuple[str, ...], dict[str, Any], frozenset[str]]:
        if self._sqlite is None:
            compiled = cast(ClauseElement, self.statement).compile(dialect=conn.dialect)
            assert isinstance(compiled, SQLCompiler) and compiled.positiontup is not None
            expanding = frozenset(name for name, bind in compiled.binds.items() if bind.expanding)
            self._sqlite = (str(compiled), tuple(compiled.positiontup), compiled.params, expanding)
        return self._sqlite

    def _bind(self, conn: Connection, params: Mapping[str, Any]) -> tuple[str, list[Any]]:
        sql, order, defaults, expanding = self._compiled(conn)
        values: list[Any] = []
        for name in order:
            value = params[name] if name in params else defaults[name]
            if name in expanding:
                values.extend(value)
                sql = sql.replace(f"__[POSTCOMPILE_{name}]", ",".join("?" * len(value)) or "NULL")
            else:
                values.append(value)
        return sql, values

    def _rows(self, description: Sequence[Any], raw: list[tuple[Any, ...]]) -> list[Any]:
        if self._row_type is None:
            self._row_type = namedtuple("Row", [d[0] for d in description])  # type: ignore[misc]
        make = self._row_type
        if not self.json_columns:
            return [make(*r) for r in raw]
        index = [i for i, d in enumerate(description) if d[0] in self.json_columns]
        rows = []
        for r in raw:
            values = list(r)
            for i in index:
                if values[i] is not None:
                    values[i] = json.loads(values[i])
            rows.append(make(*values))
        return rows
