from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from hub.loadtest.clients import Api
from hub.loadtest.crew import Client, Crew
from hub.loadtest.options import Options
from hub.loadtest.probe import Sample
from hub.loadtest.stats import Tally


@dataclass(frozen=True, slots=True)
class Check:
    """A correctness verdict of a run (the exit status is 1 when any fails)."""

    name: str
    ok: bool
    detail: str = ""


@dataclass
class Stage:
    """What a coordinator-side driver works with during one run against one target (the hub,
    or a ceiling)."""

    target: str
    url: str
    api: Api
    crew: Crew
    options: Options
    probe: Callable[[], Awaitable[Sample]]
    tally: Tally = field(default_factory=Tally)  # the coordinator's own operations
    samples: dict[str, Sample] = field(default_factory=dict)
    marks: dict[str, float] = field(default_factory=dict)
    go_at: float = 0.0

    @property
    def hub(self) -> bool:
        return self.target == "hub"

    async def sample(self, name: str) -> None:
        self.samples[name] = await self.probe()


Driver = Callable[[Stage], Awaitable[None]]


async def run_through(stage: Stage) -> None:
    """Go, and wait for every process to finish by itself."""
    stage.go_at = stage.crew.go()
    await stage.crew.wait(limit=stage.options.timeout)


def no_checks(tally: Tally) -> list[Check]:
    return []


def no_finish(stage: Stage, tally: Tally) -> None:
    return


@dataclass
class Plan:
    """A scenario made ready: what each load process runs, on which share, and how the
    coordinator drives, checks and reports it."""

    client: Client
    shares: list[Any]
    primary: str  # the operation whose rate and hub CPU per operation are reported ("*": all)
    total: int | None = None  # operations, for the progress bar (else the duration)
    drive: Driver = run_through
    check: Callable[[Tally], list[Check]] = no_checks
    finish: Callable[[Stage, Tally], None] = no_finish  # derive series after the run
    ceilings: tuple[str, ...] = ()
    doctor_ids: list[int] = field(default_factory=list)
    sessions: str | None = None  # the tally value counting sessions held, for memory per session
    settle: bool = False  # the time until every operation was answered is a figure too
    facts: dict[str, Any] = field(default_factory=dict)


def operations(plan: Plan, tally: Tally) -> int:
    """How many primary operations a tally holds."""
    if plan.primary == "*":
        return sum(len(series) for series in tally.series.values())
    return len(tally.series.get(plan.primary, ()))


def exactly(name: str, seen: int, expected: int) -> Check:
    return Check(name, seen == expected, f"{seen} (expected {expected})")


def none_of(name: str, seen: int) -> Check:
    return Check(name, seen == 0, str(seen))


def server_errors(tally: Tally) -> int:
    """Answers that were 5xx or never came."""
    return sum(
        n for key, n in tally.outcomes.items() if key.split(" ")[1].startswith(("5", "error"))
    )
