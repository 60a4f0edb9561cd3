"""Statements of the booking path, run by the database driver itself.

A Core statement is compiled once per dialect into its SQL text, the order of its parameters
and the bind and result processors of its types, as SQLAlchemy compiles it; then it runs on
the session's own connection, in the session's transaction, through the driver's cursor.
SQLAlchemy's execution of a compiled statement (its execution context, result object and
greenlet hop) cost the booking path more than the driver's round trip does. Errors come out
as SQLAlchemy's (`IntegrityError`, `OperationalError`, ...), and a connection lost mid-way is
invalidated, as SQLAlchemy does it. A statement here neither autoflushes the session (as a
Core statement through the session does not) nor reaches the engine's cursor events.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql import ClauseElement, CompoundSelect, Select
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.sqltypes import NullType

Processor = Callable[[Any], Any] | None
_HELD = "hub.driver.held"  # session.info: (its transaction, its connection, the pooled one)


@dataclass(frozen=True, slots=True)
class Done:
    """What a statement that returns no rows did."""

    rowcount: int
    lastrowid: int | None


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    binds: tuple[tuple[str, Processor], ...]  # each parameter in the SQL's order, its processor
    fixed: dict[str, Any]  # the values the statement carries (`status = 'scheduled'`)
    results: tuple[Processor, ...]
    row: Any  # a namedtuple class of the columns returned, or None

    def arguments(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        given = {**self.fixed, **params} if self.fixed else params
        return tuple([given[n] if p is None else p(given[n]) for n, p in self.binds])

    def rows(self, found: Any) -> list[Any]:
        make, results = self.row._make, self.results
        if not any(results):
            return [make(r) for r in found]
        return [
            make([v if p is None else p(v) for v, p in zip(r, results, strict=True)]) for r in found
        ]


class Statement:
    """A Core statement (a SELECT, an INSERT, an UPDATE; no expanding IN) to run on a
    session's connection with `rows` or `run`."""

    __slots__ = ("_compiled", "_keyed", "_statement")

    def __init__(self, statement: ClauseElement, *, keyed: bool = False) -> None:
        self._statement = statement
        self._keyed = keyed  # compiled for the keys of the parameters it is given
        self._compiled: dict[tuple[str, tuple[str, ...]], _Compiled] = {}

    @classmethod
    def into(cls, table: Table) -> Statement:
        """An INSERT of the columns each call gives values for, compiled once for each set of
        them, as SQLAlchemy compiles an INSERT for the keys of its parameters."""
        return cls(insert(table), keyed=True)

    @property
    def statement(self) -> ClauseElement:
        """The Core statement it runs."""
        return self._statement

    async def rows(self, session: AsyncSession, params: Mapping[str, Any]) -> list[Any]:
        """The rows it returns, as named tuples of the columns' values."""
        held = await _held(session)
        compiled = self._for(held[1].dialect, params)
        found, _ = await _execute(held, compiled, params, fetch=True)
        return compiled.rows(found)

    async def run(self, session: AsyncSession, params: Mapping[str, Any]) -> Done:
        """Run it for what it changes: the rows it touched and the id it inserted."""
        held = await _held(session)
        _, done = await _execute(held, self._for(held[1].dialect, params), params, fetch=False)
        return done

    async def run_many(self, session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run it once for each of `rows`, which give the same keys (the driver sends an
        INSERT's rows as one)."""
        assert all(r.keys() == rows[0].keys() for r in rows), "rows of different keys"
        held = await _held(session)
        compiled = self._for(held[1].dialect, rows[0])
        await _execute(held, compiled, [compiled.arguments(r) for r in rows], fetch=False)

    def _for(self, dialect: Dialect, params: Mapping[str, Any]) -> _Compiled:
        key = (dialect.name, tuple(params) if self._keyed else ())
        found = self._compiled.get(key)
        if found is None:
            found = self._compiled[key] = _compile(self._statement, dialect, key[1])
        return found


def _compile(statement: ClauseElement, dialect: Dialect, keys: tuple[str, ...]) -> _Compiled:
    compiled: Any = statement.compile(dialect=dialect, column_keys=list(keys) or None)
    names = tuple(compiled.positiontup or ())
    binds = compiled.binds
    assert not any(binds[n].expanding for n in names), "an expanding IN is compiled per call"
    # Python-side defaults are the execution context's to compute: give those columns' values.
    assert not compiled.insert_prefetch and not compiled.update_prefetch, "a Python default"
    untyped = [n for n in names if isinstance(binds[n].type, NullType)]
    assert not untyped, f"parameters of no type (nothing would convert them): {untyped}"
    columns: list[Any] = []
    if isinstance(statement, Select | CompoundSelect):
        columns = list(statement.selected_columns)
    elif isinstance(statement, UpdateBase):
        columns = list(statement.exported_columns)  # its RETURNING, if any
    labels = [c.key for c in columns]
    bound = [(n, binds[n]) for n in names]
    types = [c.type.dialect_impl(dialect) for c in columns]
    return _Compiled(
        sql=compiled.string,
        binds=tuple((n, b.type.dialect_impl(dialect).bind_processor(dialect)) for n, b in bound),
        fixed={n: binds[n].effective_value for n in names if not binds[n].required},
        results=tuple(t.result_processor(dialect, None) for t in types),
        row=namedtuple("Row", labels, rename=True) if labels else None,
    )


Held = tuple[Any, AsyncConnection, PoolProxiedConnection]


async def _held(session: AsyncSession) -> Held:
    # The session's connection, asked for once per transaction (each ask is a greenlet hop).
    # A transaction that is no longer active (a failed flush rolled it back) is not reused:
    # asking the session for its connection raises, as any statement through it would.
    held: Held | None = session.info.get(_HELD)
    transaction = session.sync_session.get_transaction()
    if (
        held is None
        or held[0] is not transaction
        or transaction is None
        or not transaction.is_active
        or held[1].invalidated
    ):
        connection = await session.connection()  # begins the transaction if need be
        raw = await connection.get_raw_connection()
        held = session.info[_HELD] = (session.sync_session.get_transaction(), connection, raw)
    return held


async def _execute(
    held: Held,
    compiled: _Compiled,
    params: Mapping[str, Any] | list[tuple[Any, ...]],
    *,
    fetch: bool,
) -> tuple[list[Any], Done]:
    # One row's parameters by name, or the argument tuples of several (executemany).
    many = isinstance(params, list)
    arguments = params if isinstance(params, list) else compiled.arguments(params)
    _, connection, raw = held
    dialect = connection.dialect
    try:
        return await _run(raw.driver_connection, dialect, compiled.sql, arguments, many, fetch)
    except dialect.loaded_dbapi.Error as exc:
        lost = dialect.is_disconnect(exc, raw.dbapi_connection, None)
        if lost:
            connection.sync_connection.invalidate(exc)  # type: ignore[union-attr]
        raise DBAPIError.instance(
            compiled.sql,
            arguments,
            exc,
            dialect.loaded_dbapi.Error,
            hide_parameters=True,
            connection_invalidated=lost,
            dialect=dialect,
            ismulti=many,
        ) from exc
    except BaseException as exc:
        if not isinstance(exc, Exception):  # cancelled mid-statement: the protocol's state is lost
            connection.sync_connection.invalidate(exc)  # type: ignore[union-attr]
        raise


async def _run(
    driver: Any, dialect: Dialect, sql: str, arguments: Any, many: bool, fetch: bool
) -> tuple[list[Any], Done]:
    if dialect.name == "sqlite":  # aiosqlite
        try:
            cursor = await (driver.executemany if many else driver.execute)(sql, arguments)
        except ValueError as exc:  # aiosqlite's closed connection, as SQLAlchemy reads it
            if str(exc).lower() in ("no active connection", "connection closed"):
                raise dialect.loaded_dbapi.OperationalError(str(exc)) from exc
            raise
        try:
            found = list(await cursor.fetchall()) if fetch else []
            return found, Done(cursor.rowcount, cursor.lastrowid)
        finally:
            await cursor.close()
    # SQLAlchemy's cursor class for aiomysql: no SHOW WARNINGS after a statement that warns.
    async with driver.cursor(dialect.loaded_dbapi.Cursor) as cursor:
        await (cursor.executemany if many else cursor.execute)(sql, arguments)
        found = list(await cursor.fetchall()) if fetch else []
        return found, Done(cursor.rowcount, cursor.lastrowid)
