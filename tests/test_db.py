"""The embedded database's transactions: writes take SQLite's write lock up front, reads never
take it (every session of the hub either reads, begun by its first statement, or writes,
begun on purpose)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from hub import db
from hub.models import Specialization


@pytest.fixture
async def embedded(tmp_path: Path) -> AsyncIterator[tuple[db.SessionFactory, Path]]:
    path = tmp_path / "hub.sqlite3"
    db.migrate(f"sqlite+aiosqlite:///{path}")
    engine = db.create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        yield db.session_factory(engine), path
    finally:
        await engine.dispose()


def _writer_gets_in(path: Path) -> bool:
    """Whether another connection can take the write lock now, without waiting."""
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError as exc:
        assert "locked" in str(exc)
        return False
    finally:
        other.close()


async def test_a_read_leaves_the_write_lock_free(
    embedded: tuple[db.SessionFactory, Path],
) -> None:
    sessions, path = embedded
    async with sessions() as session:
        await session.scalar(select(func.count()).select_from(Specialization))
        assert session.in_transaction()
        assert _writer_gets_in(path)


async def test_a_write_holds_the_write_lock_from_its_begin(
    embedded: tuple[db.SessionFactory, Path],
) -> None:
    sessions, path = embedded
    async with sessions.begin() as session:
        await session.scalar(select(func.count()).select_from(Specialization))
        assert not _writer_gets_in(path)  # taken before its first write
        session.add(Specialization(name="Sleep medicine"))
    assert _writer_gets_in(path)


async def test_a_write_inside_an_open_read_commits_without_waiting_for_it(
    embedded: tuple[db.SessionFactory, Path],
) -> None:
    sessions, _ = embedded
    count = select(func.count()).select_from(Specialization)
    async with sessions() as read:
        before = await read.scalar(count)
        async with sessions.begin() as write:
            write.add(Specialization(name="Sleep medicine"))
        # The read's snapshot began before the write: it still counts what was there.
        assert await read.scalar(count) == before
    async with sessions() as after:
        assert await after.scalar(count) == before + 1
