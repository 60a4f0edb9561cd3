from __future__ import annotations

import asyncio
import math
import random
import time
from dataclasses import dataclass
from datetime import date, timedelta

from hub.loadtest import population
from hub.loadtest.clients import Api, Closed, Session, count_close
from hub.loadtest.crew import Context
from hub.loadtest.options import DEFAULT_DURATION, Options
from hub.loadtest.plan import Check, Plan, none_of, server_errors
from hub.loadtest.population import free_starts, tomorrow
from hub.loadtest.stats import Tally

BOOKERS, CHANGERS = 0.15, 0.05  # the rest browse and watch
DAYS = 14  # how far ahead people look
FIRST = 3_000_000  # the clinic's accounts' numbers start here


@dataclass(frozen=True, slots=True)
class Person:
    kind: str  # browse, book or change
    token: str
    seed: int


@dataclass(frozen=True, slots=True)
class Clinic:
    people: list[Person]
    doctor_ids: list[int]
    duration: float
    think: float


class Visit:
    """One person's session at the clinic: their random choices and pauses."""

    def __init__(self, ctx: Context, share: Clinic, person: Person, deadline: float) -> None:
        self.ctx, self.share, self.person, self.deadline = ctx, share, person, deadline
        self.random = random.Random(person.seed)

    @property
    def open(self) -> bool:
        return not self.ctx.stopping and time.time() < self.deadline

    async def pause(self, low: float, high: float) -> None:
        wait = self.random.uniform(low, high) * self.share.think
        await asyncio.sleep(max(0.0, min(wait, self.deadline - time.time())))

    def doctor(self) -> int:
        return self.random.choice(self.share.doctor_ids)

    def day(self) -> date:
        return tomorrow() + timedelta(days=self.random.randrange(DAYS))

    async def free(self, doctor_id: int) -> str | None:
        started = time.time()
        starts = await free_starts(self.ctx.api, doctor_id, self.day())
        self.ctx.tally.record("slots", started, time.time() - started, "200")
        self.ctx.done()
        return self.random.choice(starts) if starts else None

    async def call(self, op: str, method: str, path: str, **kw: object) -> int:
        answer = await self.ctx.api.timed(
            self.ctx.tally, op, method, path, token=self.person.token, **kw
        )
        self.ctx.done()
        if answer.status in (200, 201) and op in ("book", "reschedule"):
            self.ctx.tally.appointments.append(int(answer.body["id"]))
        if answer.status in (200, 201) and isinstance(answer.body, dict):
            return int(answer.body.get("id", 0) or 0) or 1
        return 0

    async def browse(self) -> None:
        first = tomorrow()
        window = (first.isoformat(), (first + timedelta(days=6)).isoformat())
        try:
            session = await Session.open(self.ctx.url, self.person.token)
        except (Closed, RuntimeError, TimeoutError) as exc:
            count_close(self.ctx.tally, None, exc)
            return
        try:
            doctor = 0
            while self.open:
                if not doctor or self.random.random() < 0.3:
                    if doctor:
                        await session.ask({"type": "unwatch", "doctor_id": doctor})
                    doctor = self.doctor()
                    started = time.time()
                    await session.watch(doctor, *window)
                    self.ctx.tally.record("watch", started, time.time() - started, "snapshot")
                    self.ctx.done()
                await self.pause(2, 5)
                params = {"from": window[0], "to": window[1]}
                await self.call("week", "GET", f"/doctors/{doctor}/slots", params=params)
        except (Closed, RuntimeError, TimeoutError) as exc:
            self.ctx.tally.outcomes[f"watch error {exc}"] += 1
        finally:
            count_close(self.ctx.tally, session)
            await session.close()

    async def book(self) -> None:
        while self.open:
            doctor = self.doctor()
            start = await self.free(doctor)
            if start is None:
                continue
            body = {"doctor_id": doctor, "scheduled_datetime": start}
            answer = await self.ctx.api.timed(
                self.ctx.tally,
                "hold",
                "POST",
                "/appointments/holds",
                token=self.person.token,
                body=body,
            )
            self.ctx.done()
            if answer.status != 201:
                continue
            hold = answer.body["hold_id"]
            await self.pause(0.5, 1.5)
            if self.random.random() < 0.2:
                await self.call("release", "DELETE", f"/appointments/holds/{hold}")
            else:
                await self.call("book", "POST", "/appointments/", body={"hold_id": hold})

    async def change(self) -> None:
        appointment, doctor = 0, self.doctor()
        while self.open:
            start = await self.free(doctor)
            if start is None:
                doctor = self.doctor()
                continue
            if not appointment:
                body = {"doctor_id": doctor, "scheduled_datetime": start}
                appointment = await self.call("book", "POST", "/appointments/", body=body)
            elif self.random.random() < 0.5:
                path = f"/appointments/{appointment}/cancel"
                await self.call("cancel", "PUT", path, body={"reason": "load test"})
                appointment = 0
            else:
                path = f"/appointments/{appointment}/reschedule"
                moved = await self.call(
                    "reschedule", "PUT", path, body={"scheduled_datetime": start}
                )
                appointment = moved or appointment
            await self.pause(1, 3)


async def visit(ctx: Context, share: Clinic) -> None:
    await ctx.api.warm(min(len(share.people), 100))
    ctx.reached()
    go_at = await ctx.go()
    visits = [Visit(ctx, share, person, go_at + share.duration) for person in share.people]
    await asyncio.gather(*(getattr(v, v.person.kind)() for v in visits))


async def clinic(api: Api, options: Options) -> Plan:
    """A clinic's mix: most browse a week's slots and watch a doctor live, some hold and
    book, some cancel and reschedule, for `duration` seconds."""
    doctors = await population.doctors(api, options.doctors, options)
    people = options.clients
    changers = max(1, round(people * CHANGERS))
    bookers = max(1, round(people * BOOKERS))
    browsers = max(0, people - bookers - changers)
    per = options.per_account
    first_shared = FIRST + bookers + changers
    own = await population.register(api, "patient", range(FIRST, first_shared), options)
    shared_accounts = range(first_shared, first_shared + math.ceil(browsers / per))
    shared = await population.register(api, "patient", shared_accounts, options)
    kinds = ["book"] * bookers + ["change"] * changers
    crowd = [Person(kind, account.token, 0) for kind, account in zip(kinds, own, strict=True)]
    crowd += [Person("browse", shared[n // per].token, 0) for n in range(browsers)]
    crowd = [Person(p.kind, p.token, options.seed * 100_003 + n) for n, p in enumerate(crowd)]
    random.Random(options.seed).shuffle(crowd)
    duration = options.duration or DEFAULT_DURATION
    doctor_ids = [d.id for d in doctors]
    shares = [Clinic(part, doctor_ids, duration, options.think) for part in options.split(crowd)]

    def check(tally: Tally) -> list[Check]:
        return [
            none_of("5xx or no answer", server_errors(tally)),
            none_of("sessions closed by the hub", sum(tally.closes.values())),
            none_of("watch errors", tally.count("watch") - tally.count("watch", "snapshot")),
        ]

    return Plan(
        visit,
        shares,
        "*",
        check=check,
        ceilings=("http",),
        doctor_ids=doctor_ids,
        facts={
            "browsers": browsers,
            "bookers": bookers,
            "changers": changers,
            "duration": duration,
        },
    )
