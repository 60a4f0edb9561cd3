from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hub.loadtest import population
from hub.loadtest.clients import Api, Closed, Session, count_close
from hub.loadtest.crew import Context
from hub.loadtest.options import Options
from hub.loadtest.plan import Check, Plan, Stage, exactly, none_of
from hub.loadtest.population import SetupFailed, SlotSource
from hub.loadtest.stats import Series, Tally

OPENING = 50  # sessions a load process opens at once when it ramps up (fanout, idle)
FAILURES_IN_A_ROW = 20  # idle stops opening after this many refusals in a row
SETTLE = 10.0  # seconds for the last events (fanout) or the hub's session count (storm, idle)


@dataclass(frozen=True, slots=True)
class Viewing:
    tokens: list[str]  # one per viewer (an account has several viewers)
    doctor_id: int
    first: str
    last: str
    starts: frozenset[str] = frozenset()  # fanout: the starts whose `booked` events count


async def _viewer(
    ctx: Context, token: str, share: Viewing, origin: float | None = None
) -> Session | None:
    """Open, authenticate and (with a doctor) watch; `connect` and `snapshot` timed from
    `origin` (the go) when given; a refusal counted by close code."""
    tally, began = ctx.tally, origin or time.time()

    def on_event(message: dict[str, Any], arrival: float) -> None:
        start = message.get("start", "")
        booked = message.get("type") == "slot" and message.get("state") == "booked"
        if booked and start in share.starts:
            committed = message.get("committed_at")
            at = datetime.fromisoformat(committed).timestamp() if committed else None
            tally.arrivals.append((start, arrival, at))
            ctx.done()

    try:
        session = await Session.open(ctx.url, token, on_event)
    except (Closed, RuntimeError, TimeoutError) as exc:
        code = exc.code if isinstance(exc, Closed) else 0
        tally.record("connect", began, time.time() - began, f"close {code}" if code else "refused")
        count_close(tally, None, exc)
        return None
    tally.record("connect", began, time.time() - began, "ready")
    if share.doctor_id:
        try:
            await session.watch(share.doctor_id, share.first, share.last)
        except (Closed, RuntimeError, TimeoutError) as exc:
            tally.record("snapshot", began, time.time() - began, f"error {exc}")
            count_close(tally, session, exc)
            await session.close()
            return None
        tally.record("snapshot", began, time.time() - began, "ok")
    tally.values["sessions"] += 1
    return session


async def _close_all(ctx: Context, sessions: list[Session]) -> None:
    for session in sessions:
        count_close(ctx.tally, session)
    await asyncio.gather(*(s.close() for s in sessions))


async def _ramp(ctx: Context, share: Viewing, *, stop_on_failures: bool) -> list[Session]:
    """Open every viewer of the share, OPENING at a time."""
    gate, failures, opened = asyncio.Semaphore(OPENING), [0], []

    async def one(token: str) -> None:
        async with gate:
            if stop_on_failures and failures[0] >= FAILURES_IN_A_ROW:
                ctx.tally.values["not tried"] += 1
                return
            session = await _viewer(ctx, token, share)
            if session is None:
                failures[0] += 1
                return
            failures[0] = 0
            opened.append(session)

    await asyncio.gather(*(one(token) for token in share.tokens))
    return opened


def _viewer_tokens(accounts: list[population.Account], viewers: int, per: int) -> list[str]:
    return [accounts[n // per].token for n in range(viewers)]


async def _audience(api: Api, options: Options, viewers: int) -> list[str]:
    per = options.per_account
    accounts = await population.register(api, "patient", range(math.ceil(viewers / per)), options)
    return _viewer_tokens(accounts, viewers, per)


# -- fanout --------------------------------------------------------------------------------


async def watch_bookings(ctx: Context, share: Viewing) -> None:
    sessions = await _ramp(ctx, share, stop_on_failures=False)
    ctx.reached()
    await ctx.stopped()
    await _close_all(ctx, sessions)


async def fanout(api: Api, options: Options) -> Plan:
    """V viewers watch one doctor; the coordinator books a slot every `interval` seconds;
    each `booked` event timed from just before its booking was sent (and from the event's
    `committed_at`, when it carries one)."""
    doctors = await population.doctors(api, options.doctors, options)
    pairs = await SlotSource(api, [doctors[0].id], 0, 1, options.doctors).take(options.bookings)
    if len(pairs) < options.bookings:
        raise SetupFailed("the first load doctor has too few free slots left")
    viewers = options.clients
    tokens = await _audience(api, options, viewers)
    booker = await population.register(api, "patient", range(10**6, 10**6 + 1), options)
    starts = [start for _, start in pairs]
    doctor_id = doctors[0].id
    share = Viewing([], doctor_id, starts[0][:10], starts[-1][:10], frozenset(starts))
    shares = [
        Viewing(part, doctor_id, share.first, share.last, share.starts)
        for part in options.split(tokens[:viewers])
    ]

    async def drive(stage: Stage) -> None:
        control = None if stage.hub else await Session.open(stage.url, "control")
        stage.go_at = stage.crew.go(0.0)

        async def trigger(start: str) -> None:
            stage.marks[start] = time.time()
            if control is not None:
                await control.ask({"type": "broadcast", "start": start})
                return
            body = {"doctor_id": doctor_id, "scheduled_datetime": start}
            answer = await stage.api.timed(
                stage.tally, "book", "POST", "/appointments/", token=booker[0].token, body=body
            )
            if answer.status == 201:
                stage.tally.appointments.append(int(answer.body["id"]))

        async with asyncio.TaskGroup() as group:
            for n, start in enumerate(starts):
                await asyncio.sleep(max(0.0, stage.go_at + n * options.interval - time.time()))
                group.create_task(trigger(start))
        if control is not None:
            await control.close()
        await stage.crew.wait(viewers * len(starts), limit=SETTLE)
        stage.crew.stop()

    def finish(stage: Stage, tally: Tally) -> None:
        delivery, committed = Series(), Series()
        for start, arrival, at in tally.arrivals:
            sent = stage.marks[start]
            delivery.add(sent, arrival - sent)
            if at is not None:
                committed.add(at, arrival - at)
        tally.series["delivery"] = delivery
        if committed:
            tally.series["delivery from commit"] = committed

    def check(tally: Tally) -> list[Check]:
        return [
            exactly("viewers watching", tally.values["sessions"], viewers),
            exactly("bookings 201", tally.count("book", "201"), len(starts)),
            exactly("booked events received", len(tally.arrivals), viewers * len(starts)),
            none_of("sessions closed by the hub", sum(tally.closes.values())),
        ]

    return Plan(
        watch_bookings,
        shares,
        "delivery",
        total=viewers * len(starts),
        drive=drive,
        check=check,
        finish=finish,
        ceilings=("broadcast",),
        doctor_ids=[doctor_id],
        facts={"doctor_id": doctor_id, "viewers": viewers, "bookings": len(starts)},
    )


# -- storm and idle ------------------------------------------------------------------------


async def rush(ctx: Context, share: Viewing) -> None:
    ctx.reached()
    go_at = await ctx.go()
    opened = await asyncio.gather(*(_viewer(ctx, token, share, go_at) for token in share.tokens))
    ctx.done(len(share.tokens))
    ctx.reached(2)
    await ctx.stopped()
    await _close_all(ctx, [s for s in opened if s is not None])


async def linger(ctx: Context, share: Viewing) -> None:
    ctx.reached()
    await ctx.go()
    sessions = await _ramp(ctx, share, stop_on_failures=True)
    ctx.done(len(share.tokens))
    ctx.reached(2)
    await ctx.stopped()

    async def ping(session: Session) -> None:
        started = time.time()
        try:
            await session.ask({"type": "ping"})
        except (Closed, RuntimeError, TimeoutError):
            ctx.tally.record("ping", started, time.time() - started, "lost")
            return
        ctx.tally.record("ping", started, time.time() - started, "pong")
        ctx.tally.values["alive"] += 1

    await asyncio.gather(*(ping(s) for s in sessions))
    await _close_all(ctx, sessions)


async def _held(stage: Stage) -> None:
    stage.go_at = stage.crew.go()
    await stage.crew.phase(2, limit=stage.options.timeout)
    await asyncio.sleep(stage.options.hold)
    # The hub answers `ready` before it has registered (and counted) the session: sample
    # once its session gauge stops rising.
    deadline = time.monotonic() + SETTLE
    await stage.sample("peak")
    while time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        counted = stage.samples["peak"].sessions
        await stage.sample("peak")
        if counted is None or stage.samples["peak"].sessions == counted:
            break
    stage.crew.stop()


async def _crowd(
    api: Api, options: Options, sessions: int, *, watching: bool
) -> tuple[list[Viewing], int]:
    doctor_id = 0
    if watching:
        doctors = await population.doctors(api, 1, options)
        doctor_id = doctors[0].id
    day = population.tomorrow().isoformat()
    tokens = await _audience(api, options, sessions)
    return [Viewing(part, doctor_id, day, day) for part in options.split(tokens)], doctor_id


async def storm(api: Api, options: Options) -> Plan:
    """V viewers of one doctor connect at the same moment: the time until each holds its
    snapshot, every close counted by code."""
    viewers = options.clients
    shares, doctor_id = await _crowd(api, options, viewers, watching=True)

    def check(tally: Tally) -> list[Check]:
        return [
            exactly("viewers holding a snapshot", tally.values["sessions"], viewers),
            none_of("sessions closed by the hub", sum(tally.closes.values())),
        ]

    return Plan(
        rush,
        shares,
        "snapshot",
        total=viewers,
        drive=_held,
        check=check,
        ceilings=("broadcast",),
        doctor_ids=[doctor_id],
        sessions="sessions",
        facts={"doctor_id": doctor_id, "viewers": viewers},
    )


async def idle(api: Api, options: Options) -> Plan:
    """As many authenticated sessions as the hub holds, up to `clients`: the hub's memory
    per session, and a ping on each after the hold."""
    wanted = options.clients
    shares, _ = await _crowd(api, options, wanted, watching=False)

    def check(tally: Tally) -> list[Check]:
        return [
            exactly("sessions held", tally.values["sessions"], wanted),
            exactly("sessions answering a ping after the hold", tally.values["alive"], wanted),
            none_of("sessions closed by the hub", sum(tally.closes.values())),
        ]

    return Plan(
        linger,
        shares,
        "connect",
        total=wanted,
        drive=_held,
        check=check,
        ceilings=("broadcast",),
        sessions="sessions",
        facts={"sessions": wanted},
    )
