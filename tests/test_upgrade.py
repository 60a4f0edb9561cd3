"""A rolling upgrade: the new version migrates first, and the old replicas keep serving on
the newer schema (the migrations only add), while a schema behind the code is refused."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from dataclasses import replace

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from hub import db
from hub.app import prepare_schema
from hub.config import Settings
from hub.errors import ConfigError
from tests.conftest import MARIADB_URL


@pytest.fixture
def fresh() -> Iterator[str]:
    """A database of its own on the test MariaDB, migrated to the head, dropped after."""
    if MARIADB_URL is None:
        pytest.skip("needs the test MariaDB")
    name = f"hub_upgrade_{secrets.token_hex(4)}"
    server = create_engine(make_url(MARIADB_URL).set(drivername="mysql+pymysql", database=""))
    with server.begin() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}`"))
    url = make_url(MARIADB_URL).set(database=name).render_as_string(hide_password=False)
    try:
        db.migrate(url)
        yield url
    finally:
        with server.begin() as conn:
            conn.execute(text(f"DROP DATABASE `{name}`"))
        server.dispose()


def _stamp(url: str, revision: str) -> None:
    engine = create_engine(make_url(url).set(drivername="mysql+pymysql"))
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
    engine.dispose()


def test_a_schema_ahead_of_the_code_is_served_and_one_behind_is_refused(
    fresh: str, settings: Settings
) -> None:
    local = replace(settings, database_url=fresh)
    asyncio.run(prepare_schema(local))  # at the head
    _stamp(fresh, "f00d")  # a revision a newer version wrote
    asyncio.run(prepare_schema(local))
    older = sorted(db.older_revisions(fresh))[-1]
    _stamp(fresh, older)
    with pytest.raises(ConfigError, match="python -m hub migrate"):
        asyncio.run(prepare_schema(local))
