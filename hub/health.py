from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from alembic.runtime.migration import MigrationContext
from redis.asyncio import Redis, RedisCluster
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

from hub import db

TIMEOUT = 1.0  # seconds the database and Redis each have to answer
REVISION_TTL = 15.0  # seconds a schema found at the head is trusted before it is read again
OK = "ok"
UNCONFIGURED = "not configured"
UNKNOWN = "unknown"  # the schema, while the database does not answer


@dataclass(frozen=True, slots=True)
class Checks:
    """What `/ready` found: each part `ok` or what is wrong with it."""

    database: str
    redis: str
    schema: str

    @property
    def ready(self) -> bool:
        return all(part in (OK, UNCONFIGURED) for part in (self.database, self.redis, self.schema))


class Readiness:
    """Whether this process can serve: the database and Redis answer within `timeout` (asked
    at once, side by side) and the schema is at the newest migration. Cheap enough to poll
    every second: one `SELECT 1` and one `PING`; the schema's revision is read again only
    `revision_ttl` seconds after it was last found right (at once while it is wrong)."""

    def __init__(
        self,
        engine: AsyncEngine,
        redis: Redis | RedisCluster | None,
        database_url: str,
        *,
        timeout: float = TIMEOUT,
        revision_ttl: float = REVISION_TTL,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine, self._redis, self._url = engine, redis, database_url
        self._timeout, self._ttl, self._monotonic = timeout, revision_ttl, monotonic
        self._head: str | None = None
        self._older: frozenset[str] = frozenset()
        self._confirmed: float | None = None  # when the revision was last found at the head

    async def check(self) -> Checks:
        (database, schema), redis = await asyncio.gather(self._database(), self._ping_redis())
        return Checks(database=database, redis=redis, schema=schema)

    async def _database(self) -> tuple[str, str]:
        now = self._monotonic()
        due = self._confirmed is None or now - self._confirmed >= self._ttl
        if due and self._head is None:  # the migration scripts: read from disk once
            self._head = await asyncio.to_thread(db.head_revision, self._url)
            self._older = await asyncio.to_thread(db.older_revisions, self._url)
        try:
            async with asyncio.timeout(self._timeout):
                async with self._engine.connect() as connection:
                    if not due:
                        await connection.execute(text("SELECT 1"))
                        return OK, OK
                    current = await connection.run_sync(_revision)
        except TimeoutError:
            return "timeout", UNKNOWN
        except Exception as exc:  # whatever it is, this process cannot serve
            return f"error: {type(exc).__name__}", UNKNOWN
        if current is None or current in self._older:  # behind; ahead is fine (an upgrade)
            self._confirmed = None
            return OK, f"at {current}, needs {self._head}"
        self._confirmed = now
        return OK, OK

    async def _ping_redis(self) -> str:
        if self._redis is None:
            return UNCONFIGURED
        try:
            async with asyncio.timeout(self._timeout):
                await self._redis.ping()
        except TimeoutError:
            return "timeout"
        except Exception as exc:
            return f"error: {type(exc).__name__}"
        return OK


def _revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()
