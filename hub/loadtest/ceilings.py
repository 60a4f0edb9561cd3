from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

import pymysql

from hub.loadtest import hollow, transaction
from hub.loadtest.crew import WorkerFailed
from hub.loadtest.options import Options
from hub.loadtest.plan import Plan, no_checks, run_through
from hub.loadtest.transaction import Dsn, Replay

# What each kind is the ceiling of, for the report.
KINDS = {
    "http": "the hub's routes answered with canned JSON by Starlette on uvicorn (one process)",
    "broadcast": "a bare websockets server (one process) broadcasting to the same connections",
    "transaction": "the booking transaction replayed raw through aiomysql at the same concurrency",
}


# What ends a ceiling early without spoiling the hub's figures (a full database server, say).
FAILURES = (WorkerFailed, OSError, RuntimeError, pymysql.err.MySQLError)


class Unavailable(Exception):
    """This ceiling cannot run here (say, the raw transaction without a MySQL URL)."""


@dataclass(frozen=True, slots=True)
class Ceiling:
    kind: str
    url: str  # where the load processes point
    pids: list[int]  # the ceiling server's processes, for CPU and memory
    plan: Plan


@asynccontextmanager
async def ceiling(kind: str, plan: Plan, options: Options) -> AsyncIterator[Ceiling]:
    """The ceiling `kind` of a scenario's plan, running: the same clients against a hollow
    server, or the raw booking transaction in a scratch database dropped after."""
    bare = replace(plan, check=no_checks)
    if kind == "http":
        args = (options.slot_minutes, options.argon2_time_cost, options.argon2_memory_kib)
        with hollow.served("http", *args) as (url, pid):
            yield Ceiling(kind, url, [pid], bare)
    elif kind == "broadcast":
        with hollow.served("ws", options.slot_minutes) as (url, pid):
            yield Ceiling(kind, url, [pid], bare)
    elif kind == "transaction":
        if not options.database_url or not options.database_url.startswith("mysql"):
            raise Unavailable("the transaction ceiling needs --database-url mysql+aiomysql://...")
        dsn = Dsn.of(options.database_url, options.ceiling_database)
        clients = options.clients
        same = options.scenario == "contention"
        count = clients if same else options.count
        duration = None if same or options.count else plan.facts.get("duration")
        doctors = max(1, len(plan.doctor_ids))
        patients = list(range(1, clients + 1))
        pool = max(1, -(-options.ceiling_pool // options.procs))
        shares = [
            Replay(
                dsn,
                part,
                doctors,
                same,
                None if count is None else options.share(count, n),
                duration,
                pool,
            )
            for n, part in enumerate(options.split(patients))
        ]
        raw = Plan(transaction.replay, shares, "book", total=count, drive=run_through)
        async with transaction.scratch(dsn, doctors, clients):
            yield Ceiling(kind, "", [], raw)
    else:
        raise Unavailable(f"no ceiling {kind}")
