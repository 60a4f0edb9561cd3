from __future__ import annotations

import asyncio
import contextlib
import math
import time
from dataclasses import dataclass

from hub.loadtest import population
from hub.loadtest.clients import Api, Closed, Session, count_close
from hub.loadtest.crew import Context
from hub.loadtest.options import Options
from hub.loadtest.plan import Check, Plan, Stage, exactly, none_of, server_errors
from hub.loadtest.stats import Series, Tally

PING_EVERY = 0.05  # each pinger: 20 a second at most, the hub's command rate
BASELINE = 1.0  # seconds of pings before the logins start
FIRST = 2_000_000  # the login accounts' numbers start here, apart from everyone else's


@dataclass(frozen=True, slots=True)
class Logins:
    numbers: list[int]  # the accounts this process signs in
    pingers: list[str]  # tokens of the live sessions this process times pings on
    password: str


async def _ping_loop(ctx: Context, session: Session) -> None:
    while not ctx.stopping:
        started = time.time()
        try:
            await session.ask({"type": "ping"})
        except (Closed, RuntimeError, TimeoutError) as exc:
            ctx.tally.record("ping", started, time.time() - started, f"lost {exc}")
            return
        ctx.tally.record("ping", started, time.time() - started, "pong")
        await asyncio.sleep(PING_EVERY)


async def sign_in(ctx: Context, share: Logins) -> None:
    sessions = [await Session.open(ctx.url, token) for token in share.pingers]
    async with asyncio.TaskGroup() as group:
        for session in sessions:
            group.create_task(_ping_loop(ctx, session))
        ctx.reached()
        await ctx.go()

        async def login(number: int) -> None:
            form = {"username": population.email("patient", number), "password": share.password}
            await ctx.api.timed(ctx.tally, "login", "POST", "/patients/login", form=form)
            ctx.done()

        await asyncio.gather(*(login(n) for n in share.numbers))
        ctx.reached(2)
        await ctx.stopped()
    for session in sessions:
        count_close(ctx.tally, session)
    for session in sessions:
        with contextlib.suppress(Exception):
            await session.close()


async def logins(api: Api, options: Options) -> Plan:
    """L concurrent logins at the hub's argon2 cost, while `pingers` live sessions time
    `ping` round trips (before the logins, and while they run)."""
    count = options.clients
    numbers = list(range(FIRST, FIRST + count))
    await population.register(api, "patient", range(FIRST, FIRST + count), options, signed_in=False)
    per = options.per_account
    accounts = await population.register(
        api, "patient", range(math.ceil(options.pingers / per)), options
    )
    pingers = [accounts[n // per].token for n in range(options.pingers)]
    shares = [
        Logins(part, pings, options.password)
        for part, pings in zip(options.split(numbers), options.split(pingers), strict=True)
    ]

    async def drive(stage: Stage) -> None:
        await asyncio.sleep(BASELINE)
        stage.go_at = stage.crew.go()
        await stage.crew.phase(2, limit=stage.options.timeout)
        await asyncio.sleep(BASELINE / 2)
        stage.crew.stop()

    def finish(stage: Stage, tally: Tally) -> None:
        login = tally.series.get("login", Series())
        pings = tally.series.pop("ping", Series())
        if not login:
            return
        first = min(login.starts)
        last = max(s + lat for s, lat in zip(login.starts, login.latencies, strict=True))
        during, before = Series(), Series()
        for start, latency in zip(pings.starts, pings.latencies, strict=True):
            (during if first <= start <= last else before).add(start, latency)
        tally.series["ping during logins"] = during
        tally.series["ping before logins"] = before

    def check(tally: Tally) -> list[Check]:
        return [
            exactly("logins 200", tally.count("login", "200"), count),
            none_of("5xx or no answer", server_errors(tally)),
            none_of("pings lost", sum(n for k, n in tally.outcomes.items() if "lost" in k)),
        ]

    return Plan(
        sign_in,
        shares,
        "login",
        total=count,
        drive=drive,
        check=check,
        finish=finish,
        ceilings=("http",),
        facts={"logins": count, "pingers": options.pingers},
    )
