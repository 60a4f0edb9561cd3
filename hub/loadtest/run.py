from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from hub.loadtest import bookings, clinic, logins, probe, viewers
from hub.loadtest.audit import Audit, audit
from hub.loadtest.ceilings import FAILURES, Unavailable, ceiling
from hub.loadtest.clients import Api
from hub.loadtest.crew import Crew, cpu_seconds
from hub.loadtest.options import Options
from hub.loadtest.plan import Check, Plan, Stage
from hub.loadtest.probe import Sample
from hub.loadtest.stats import Tally

Prepare = Callable[[Api, Options], Awaitable[Plan]]
SCENARIOS: dict[str, Prepare] = {
    "contention": bookings.contention,
    "throughput": bookings.throughput,
    "fanout": viewers.fanout,
    "storm": viewers.storm,
    "idle": viewers.idle,
    "logins": logins.logins,
    "clinic": clinic.clinic,
}
# Shown while a run goes: which target, operations done, the total (if known), seconds since go.
Progress = Callable[[str, int, int | None, float], None]


@dataclass
class Outcome:
    """One run of a plan against one target: the merged tally and the target's samples."""

    target: str
    tally: Tally
    go_at: float
    ended: float
    samples: dict[str, Sample]

    @property
    def elapsed(self) -> float:
        return max(1e-9, self.ended - self.go_at)


@dataclass
class Result:
    options: Options
    plan: Plan
    hub: Outcome
    setup_seconds: float
    checks: list[Check]
    audit: Audit | None = None
    ceilings: dict[str, Outcome] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)


async def _show(stage: Stage, total: int | None, progress: Progress) -> None:
    while True:
        since = time.time() - stage.go_at if stage.go_at else 0.0
        progress(stage.target, stage.crew.done, total, since)
        await asyncio.sleep(0.2)


async def perform(
    target: str,
    url: str,
    plan: Plan,
    options: Options,
    sampler: Callable[[Api], Awaitable[Sample]],
    progress: Progress,
) -> Outcome:
    """Run `plan` against `url`: start the load processes, wait until they are ready, sample
    the target, drive, collect, sample again."""
    began = cpu_seconds()
    async with Api.open(url) as api, Crew(url, plan.client, plan.shares) as crew:
        stage = Stage(target, url, api, crew, options, lambda: sampler(api))
        await crew.phase(1, limit=options.timeout)
        await stage.sample("before")
        shower = asyncio.create_task(_show(stage, plan.total, progress))
        try:
            await plan.drive(stage)
            tally = await crew.results(limit=options.timeout)
        finally:
            shower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await shower
        ended = time.time()
        progress(target, crew.done, plan.total, ended - stage.go_at)
        await stage.sample("after")
    tally.merge(stage.tally)
    tally.cpu += cpu_seconds() - began
    plan.finish(stage, tally)
    return Outcome(target, tally, stage.go_at, ended, stage.samples)


def _quiet(target: str, done: int, total: int | None, elapsed: float) -> None:
    return


async def run(options: Options, progress: Progress = _quiet) -> Result:
    """Prepare the scenario against the hub, run it, check it (and the database when given),
    then its ceilings when asked."""
    started = time.time()
    async with Api.open(options.url) as api:
        plan = await SCENARIOS[options.scenario](api, options)
    setup = time.time() - started
    pids = probe.listening(options.url)

    async def hub_sample(api: Api) -> Sample:
        return await probe.scrape(api, pids)

    hub = await perform("hub", options.url, plan, options, hub_sample, progress)
    result = Result(options, plan, hub, setup, plan.check(hub.tally))
    if options.database_url:
        result.audit = await audit(options.database_url, plan.doctor_ids, hub.tally.appointments)
        result.checks += result.audit.checks()
    if options.ceiling:
        for kind in plan.ceilings:
            try:
                async with ceiling(kind, plan, options) as bare:

                    async def bare_sample(api: Api, pids: list[int] = bare.pids) -> Sample:
                        return probe.local(pids)

                    result.ceilings[kind] = await perform(
                        kind, bare.url, bare.plan, options, bare_sample, progress
                    )
            except Unavailable as exc:
                result.notes.append(f"{kind} ceiling skipped: {exc}")
            except FAILURES as exc:  # the hub's figures still stand
                last = str(exc).strip().splitlines()[-1:] or [type(exc).__name__]
                result.notes.append(f"{kind} ceiling failed: {last[0]}")
    return result
