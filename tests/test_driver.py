"""Statements run by the driver itself (hub.driver): the same values both ways as SQLAlchemy
gives and takes, in the session's transaction, SQLAlchemy's errors, and a lost connection
let go of, on MariaDB and the embedded SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import (
    Engine,
    Integer,
    String,
    Table,
    bindparam,
    cast,
    func,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError, PendingRollbackError

from hub import db
from hub.config import Settings
from hub.driver import Statement
from hub.models import Delivery, Notice, Notification, Specialization

NOTIFICATIONS = Notification.__table__
assert isinstance(NOTIFICATIONS, Table)
N = NOTIFICATIONS.c
WRITE = Statement.into(NOTIFICATIONS)  # compiled for the keys of each call
READ = Statement(
    select(N.id, N.kind, N.payload, N.due_at, N.state, N.start_at)
    .where(N.account_id == bindparam("account"), N.state == Delivery.pending)
    .order_by(N.id)
)
NAMES = Specialization.__table__
assert isinstance(NAMES, Table)
NAME = Statement(insert(NAMES).values(name=bindparam("name")))


@pytest.fixture
async def sessions(settings: Settings) -> AsyncIterator[db.SessionFactory]:
    engine = db.create_engine(settings.database_url)
    try:
        yield db.session_factory(engine)
    finally:
        await engine.dispose()


def row(account: int, due: datetime, **payload: object) -> dict[str, object]:
    return {
        "kind": Notice.booked,
        "channel": "email",
        "role": "patient",
        "account_id": account,
        "payload": payload,
        "due_at": due,
        "state": Delivery.pending,
        "attempts": 0,
        "created_at": due,
    }


async def test_rows_come_back_as_sqlalchemy_reads_them(sessions: db.SessionFactory) -> None:
    """Enums, JSON and the UTC datetimes (a zone other than UTC going in) read back as the
    ORM's own read of the same rows has them."""
    due = datetime(2031, 3, 4, 12, 30, 15, 250_000, tzinfo=UTC)
    async with sessions.begin() as session:
        done = await WRITE.run(session, row(7001, due.astimezone(), note="café · ü"))
        await WRITE.run_many(session, [row(7001, due, n=1), row(7001, due, n=2)])
        found = await READ.rows(session, {"account": 7001})
    assert done.rowcount == 1 and done.lastrowid == found[0].id
    async with sessions() as session:
        orm = (
            await session.scalars(
                select(Notification)
                .where(Notification.account_id == 7001)
                .order_by(Notification.id)
            )
        ).all()
    assert [(r.id, r.kind, r.payload, r.due_at, r.state, r.start_at) for r in orm] == [
        tuple(r) for r in found
    ]
    first = found[0]
    assert first.kind is Notice.booked and first.state is Delivery.pending
    assert first.payload == {"note": "café · ü"} and [r.payload for r in found[1:]] == [
        {"n": 1},
        {"n": 2},
    ]
    assert first.due_at == due and first.due_at.tzinfo is UTC and first.start_at is None


async def test_its_statements_are_the_sessions_transaction(sessions: db.SessionFactory) -> None:
    """Rolled back with the session, seen by the session's own statements before that."""
    due = datetime(2031, 3, 4, 12, 0, tzinfo=UTC)
    count = select(func.count()).select_from(NOTIFICATIONS).where(N.account_id == 7002)
    async with sessions() as session:
        await WRITE.run(session, row(7002, due))
        assert await session.scalar(count) == 1
        await session.rollback()
        assert await session.scalar(count) == 0


async def test_a_refused_insert_is_sqlalchemys_integrity_error_and_the_transaction_goes_on(
    sessions: db.SessionFactory,
) -> None:
    async with sessions.begin() as session:
        await NAME.run(session, {"name": "Driver tests"})
        with pytest.raises(IntegrityError) as refused:
            await NAME.run(session, {"name": "Driver tests"})
        assert "parameters hidden" in str(refused.value)  # as the engine hides them
        await NAME.run(session, {"name": "Driver tests 2"})
    async with sessions() as session:
        names = await session.scalars(
            select(Specialization.name).where(Specialization.name.like("Driver tests%"))
        )
        assert sorted(names) == ["Driver tests", "Driver tests 2"]


async def test_an_update_tells_how_many_rows_it_changed(sessions: db.SessionFactory) -> None:
    due = datetime(2031, 3, 4, 12, 0, tzinfo=UTC)
    attempt = Statement(
        update(NOTIFICATIONS)
        .where(N.account_id == bindparam("account"))
        .values(attempts=N.attempts + literal(1))
    )
    async with sessions.begin() as session:
        await WRITE.run_many(session, [row(7003, due), row(7003, due)])
        assert (await attempt.run(session, {"account": 7003})).rowcount == 2
        assert (await attempt.run(session, {"account": 7004})).rowcount == 0


def test_a_parameter_of_no_type_is_refused_when_compiled(sessions: db.SessionFactory) -> None:
    """Nothing would convert its values (a datetime's zone, a dict to JSON): say so at once."""
    several = insert(NAMES).values([{"name": bindparam(f"name_{n}")} for n in range(2)])
    dialect = sessions.kw["bind"].dialect
    with pytest.raises(AssertionError, match="no type"):
        Statement(several)._for(dialect, {})


async def test_an_insert_without_a_column_of_python_default_is_refused(
    sessions: db.SessionFactory,
) -> None:
    """The execution context computes Python-side defaults (`channel` is "email"); this
    statement has none, so leaving such a column out is refused rather than written NULL."""
    due = datetime(2031, 3, 4, 12, 0, tzinfo=UTC)
    without = {k: v for k, v in row(7006, due).items() if k != "channel"}
    async with sessions() as session:
        with pytest.raises(AssertionError, match="a Python default"):
            await WRITE.run(session, without)


async def test_a_connection_lost_mid_transaction_is_let_go_and_the_next_session_works(
    sessions: db.SessionFactory, raw: Engine, backend: str
) -> None:
    if backend != "mariadb":
        pytest.skip("only a server's connection can be killed")
    async with sessions() as session:
        connection = await session.connection()
        own = (await connection.exec_driver_sql("SELECT CONNECTION_ID()")).scalar_one()
        with raw.connect() as killer:
            killer.execute(text(f"KILL CONNECTION {int(own)}"))
        with pytest.raises(OperationalError) as lost:
            await READ.rows(session, {"account": 1})
        assert lost.value.connection_invalidated
        assert connection.invalidated
    async with sessions() as session:
        assert await READ.rows(session, {"account": 1}) == []


async def test_a_session_that_commits_runs_the_next_statements_in_its_next_transaction(
    sessions: db.SessionFactory,
) -> None:
    """The session's connection is asked for once a transaction: after a commit, statements
    belong to the one that begins next (rolled back here, while the first stays)."""
    due = datetime(2031, 3, 4, 12, 0, tzinfo=UTC)
    async with sessions() as session:
        await WRITE.run(session, row(7005, due, n=1))
        await session.commit()
        await WRITE.run(session, row(7005, due, n=2))
        assert session.in_transaction()
        await session.rollback()
    async with sessions() as session:
        assert [r.payload for r in await READ.rows(session, {"account": 7005})] == [{"n": 1}]


async def test_a_transaction_a_failed_flush_ended_runs_nothing_more(
    sessions: db.SessionFactory,
) -> None:
    """After a flush failed (SQLAlchemy rolled the transaction back), a statement here is
    refused as one through the session is, not run on the connection outside any transaction
    (on SQLite it would commit at once, on MariaDB open one the pool never ends)."""
    async with sessions() as session:
        await NAME.run(session, {"name": "Driver flush"})
        session.add(Specialization(name="Driver flush"))
        with pytest.raises(IntegrityError):
            await session.flush()
        with pytest.raises(PendingRollbackError):
            await NAME.run(session, {"name": "Driver flush 2"})
        await session.rollback()
    async with sessions() as session:
        names = select(Specialization.name).where(Specialization.name.like("Driver flush%"))
        assert list(await session.scalars(names)) == []


async def test_a_statement_the_server_warns_about_raises_no_warning(
    sessions: db.SessionFactory, backend: str
) -> None:
    """As SQLAlchemy's own aiomysql cursor: no SHOW WARNINGS and no Python warning after a
    statement the server warned about (under pytest's `error` filter, a warning raised)."""
    if backend != "mariadb":
        pytest.skip("the server's warnings are MariaDB's")
    async with sessions() as session:
        # Text that is not a number, made one: MariaDB answers with warning 1292.
        number = Statement(select(cast(bindparam("text", type_=String), Integer).label("n")))
        assert [tuple(r) for r in await number.rows(session, {"text": "7 and then some"})] == [(7,)]


async def test_a_closed_sqlite_connection_is_an_operational_error_and_let_go(
    sessions: db.SessionFactory, backend: str
) -> None:
    """aiosqlite's ValueError for a closed connection comes out as SQLAlchemy has it: an
    OperationalError, the connection invalidated."""
    if backend != "embedded":
        pytest.skip("aiosqlite's closed connection")
    async with sessions() as session:
        await READ.rows(session, {"account": 1})
        connection = await session.connection()
        await (await connection.get_raw_connection()).driver_connection.close()
        with pytest.raises(OperationalError) as lost:
            await READ.rows(session, {"account": 1})
        assert lost.value.connection_invalidated and connection.invalidated
