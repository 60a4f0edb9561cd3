from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from hub.loadtest import population
from hub.loadtest.clients import Api
from hub.loadtest.crew import Context
from hub.loadtest.options import DEFAULT_DURATION, Options
from hub.loadtest.plan import Check, Plan, exactly, none_of, server_errors
from hub.loadtest.population import SetupFailed, SlotSource
from hub.loadtest.stats import Tally


async def book(ctx: Context, token: str, doctor_id: int, start: str) -> None:
    """One direct booking, recorded as `book` (201s also by appointment id)."""
    body = {"doctor_id": doctor_id, "scheduled_datetime": start}
    answer = await ctx.api.timed(
        ctx.tally, "book", "POST", "/appointments/", token=token, body=body
    )
    if answer.status == 201:
        ctx.tally.appointments.append(int(answer.body["id"]))
    ctx.done()


@dataclass(frozen=True, slots=True)
class Contention:
    doctor_id: int
    start: str
    tokens: list[str]


async def contend(ctx: Context, share: Contention) -> None:
    await ctx.api.warm(len(share.tokens))
    ctx.reached()
    await ctx.go()
    await asyncio.gather(*(book(ctx, t, share.doctor_id, share.start) for t in share.tokens))


async def contention(api: Api, options: Options) -> Plan:
    """N patients book one slot at the same moment: exactly one 201, N-1 `slot_taken`."""
    doctors = await population.doctors(api, options.doctors, options)
    pair = await SlotSource(api, [doctors[0].id], 0, 1, options.doctors).next()
    if pair is None:
        raise SetupFailed("the first load doctor has no free slot left")
    patients = await population.register(api, "patient", range(options.clients), options)
    doctor_id, start = pair
    shares = [
        Contention(doctor_id, start, [p.token for p in part]) for part in options.split(patients)
    ]
    n = options.clients

    def check(tally: Tally) -> list[Check]:
        return [
            exactly("exactly one 201", tally.count("book", "201"), 1),
            exactly("the rest 409 slot_taken", tally.count("book", "409 slot_taken"), n - 1),
            none_of("5xx or no answer", server_errors(tally)),
        ]

    return Plan(
        contend,
        shares,
        "book",
        total=n,
        check=check,
        settle=True,
        ceilings=("http", "transaction"),
        doctor_ids=[doctor_id],
        facts={"doctor_id": doctor_id, "start": start, "contenders": n},
    )


@dataclass(frozen=True, slots=True)
class Throughput:
    doctor_ids: list[int]
    tokens: list[str]
    count: int | None
    duration: float | None


async def book_many(ctx: Context, share: Throughput) -> None:
    source = SlotSource(ctx.api, share.doctor_ids, ctx.index, ctx.procs)
    await source.prime()
    await ctx.api.warm(len(share.tokens))
    ctx.reached()
    go_at = await ctx.go()
    deadline = go_at + share.duration if share.duration else None
    left = [share.count if share.count is not None else -1]

    async def client(token: str) -> None:
        while not ctx.stopping and (deadline is None or time.time() < deadline) and left[0]:
            left[0] -= 1
            pair = await source.next()
            if pair is None:
                ctx.tally.values["out of free slots"] += 1
                return
            await book(ctx, token, *pair)

    await asyncio.gather(*(client(token) for token in share.tokens))


async def throughput(api: Api, options: Options) -> Plan:
    """C clients book distinct free slots back to back, for a duration or a count."""
    doctors = await population.doctors(api, options.doctors, options)
    patients = await population.register(api, "patient", range(options.clients), options)
    duration = options.duration if options.count is None else None
    duration = duration or (None if options.count else DEFAULT_DURATION)
    doctor_ids = [d.id for d in doctors]
    shares = [
        Throughput(
            doctor_ids,
            [p.token for p in part],
            None if options.count is None else options.share(options.count, n),
            duration,
        )
        for n, part in enumerate(options.split(patients))
    ]

    def check(tally: Tally) -> list[Check]:
        checks = [
            none_of("5xx or no answer", server_errors(tally)),
            none_of("409 slot_taken on distinct slots", tally.count("book", "409 slot_taken")),
        ]
        if options.count is not None:
            checks.append(exactly("bookings answered", tally.count("book"), options.count))
        return checks

    return Plan(
        book_many,
        shares,
        "book",
        total=options.count,
        check=check,
        settle=options.count is not None,
        ceilings=("http", "transaction"),
        doctor_ids=doctor_ids,
        facts={"doctors": doctor_ids, "concurrency": options.clients, "duration": duration},
    )
