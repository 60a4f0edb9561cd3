from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine
from sqlalchemy.orm import Session, SessionTransaction, SessionTransactionOrigin

SessionFactory = async_sessionmaker[AsyncSession]
T = TypeVar("T")


def create_engine(database_url: str, *, pool_size: int = 20) -> AsyncEngine:
    """The async engine for MySQL/MariaDB (aiomysql) or the embedded SQLite file (aiosqlite)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = _create_async_engine(url, connect_args={"timeout": 30}, hide_parameters=True)
        _serialise_sqlite_writers(engine)
        return engine
    return _create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
        pool_pre_ping=True,
        # Every connection comes back from a Session, which has ended its transaction
        # already: the pool's own ROLLBACK on return would be a second, idle round trip.
        pool_reset_on_return=None,
        connect_args={"charset": "utf8mb4"},
        isolation_level="READ COMMITTED",
        hide_parameters=True,  # an error's message names its statement, never its values
    )


def _serialise_sqlite_writers(engine: AsyncEngine) -> None:
    # pysqlite's implicit BEGIN is left off (isolation_level None): the session's first
    # statement begins its transaction, as `_SqliteSession` chooses.
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()


class _SqliteSession(Session):
    """A session on SQLite. A transaction begun on purpose (`sessions.begin()`, which every
    write goes through) is BEGIN IMMEDIATE: it takes the write lock up front, so two that
    read and then write queue behind the busy timeout instead of one failing with "database
    is locked". One begun by its first statement (`sessions()`, which never commits: a read)
    is a plain deferred BEGIN, which in WAL mode reads a snapshot beside the writer. A read
    never queues behind a write, and a write begun while a read is open (in the same task,
    even) does not wait the busy timeout out for it."""


@event.listens_for(_SqliteSession, "after_begin")
def _begin_sqlite(session: Session, transaction: SessionTransaction, connection: Any) -> None:
    if transaction.nested:
        return  # a SAVEPOINT inside the transaction begun below
    immediate = transaction.origin is not SessionTransactionOrigin.AUTOBEGIN
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def session_factory(engine: AsyncEngine) -> SessionFactory:
    # A session class of the factory's own, so that `after_commit` hooks one factory alone.
    base = _SqliteSession if engine.dialect.name == "sqlite" else Session
    own = type("HubSession", (base,), {})
    return async_sessionmaker(engine, expire_on_commit=False, sync_session_class=own)


def after_commit(sessions: SessionFactory, key: str, callback: Callable[[], None]) -> None:
    """Call `callback` once a transaction of `sessions` commits in which `key` was put in the
    session's `info`; a transaction rolled back forgets it."""
    own: type[Session] = sessions.kw["sync_session_class"]

    def committed(session: Session) -> None:
        if session.info.pop(key, False):
            callback()

    def rolled_back(session: Session) -> None:
        session.info.pop(key, None)

    event.listen(own, "after_commit", committed)
    event.listen(own, "after_rollback", rolled_back)


def sync_url(database_url: str) -> str:
    """The same database through a blocking driver, for Alembic."""
    url = make_url(database_url)
    driver = {"sqlite": "sqlite", "mysql": "mysql+pymysql", "mariadb": "mariadb+pymysql"}
    return url.set(drivername=driver[url.get_backend_name()]).render_as_string(hide_password=False)


def alembic_config(database_url: str) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    config.set_main_option("sqlalchemy.url", sync_url(database_url).replace("%", "%%"))
    return config


def migrate(database_url: str, revision: str = "head") -> None:
    """Bring the schema up to `revision` (blocking; run it before the event loop starts)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(database_url), revision)


def head_revision(database_url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()


def older_revisions(database_url: str) -> frozenset[str]:
    """Every revision before the head: a database at one of these is behind this code. One
    at a revision this code does not know is ahead of it (a newer version migrated it), and
    works, as the migrations only add (a rolling upgrade runs old replicas on it)."""
    scripts = ScriptDirectory.from_config(alembic_config(database_url))
    head = scripts.get_current_head()
    return frozenset(s.revision for s in scripts.walk_revisions() if s.revision != head)


async def schema_revision(engine: AsyncEngine) -> str | None:
    """The Alembic revision the database is at (None for an empty database)."""
    async with engine.connect() as connection:
        return await connection.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )


DEADLOCK = {1205, 1213}  # lock wait timeout, deadlock: InnoDB asks the client to retry
ATTEMPTS = 5
log = logging.getLogger("hub.db")


async def transaction(sessions: SessionFactory, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` in one transaction, again (up to 5 times) when InnoDB answers with a
    deadlock or a lock wait timeout; anything else propagates."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            async with sessions.begin() as session:
                return await work(session)
        except OperationalError as exc:
            args = getattr(exc.orig, "args", ())
            errno = args[0] if args and isinstance(args[0], int) else None
            if errno not in DEADLOCK or attempt == ATTEMPTS:
                raise
            log.info("retrying after InnoDB error %s", errno)
    raise AssertionError("unreachable")
