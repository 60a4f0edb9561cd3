from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from hub import runtime
from hub.config import Settings
from hub.errors import HoldsUnavailable
from hub.holds import Hold
from hub.metrics import Metrics
from tests.clocks import MovingClock

START = datetime(2031, 3, 4, 10, tzinfo=UTC)


class SwallowingHolds:
    """A sweep that turns its cancellation into an ordinary error, as a timeout inside
    redis-py can when the cancel lands just as it expires (redis-py #2551)."""

    def __init__(self) -> None:
        self.sweeps = 0
        self.swallow = True
        self.sweeping = asyncio.Event()

    async def sweep(self) -> int:
        self.sweeps += 1
        self.sweeping.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            if not self.swallow:
                raise
            raise HoldsUnavailable("holds are unavailable: TimeoutError") from None
        return 0


class Relay:
    async def flush_quietly(self) -> None:
        return None


class Audit:
    async def flush(self) -> int:
        return 0


async def test_the_sweeper_stops_even_when_its_cancellation_is_swallowed() -> None:
    holds = SwallowingHolds()
    stop = asyncio.Event()
    sweeper = asyncio.create_task(
        runtime._sweep(holds, Relay(), Audit(), stop, Metrics(), every=0.01)
    )  # type: ignore[arg-type]
    await asyncio.wait_for(holds.sweeping.wait(), timeout=5)
    stopping = asyncio.create_task(runtime._stop(sweeper, stop))
    try:
        await asyncio.wait([stopping], timeout=5)  # unlike wait_for, gives up without waiting
        assert sweeper.done(), "the sweeper kept going after it was stopped"
        assert holds.sweeps == 1  # it did not go round again after the stop
    finally:
        holds.swallow = False  # let a sweeper that did not stop be cancelled after all
        sweeper.cancel()
        await asyncio.wait([stopping], timeout=5)


async def test_every_part_of_a_hub_tells_time_by_the_clock_it_was_opened_with(
    settings: Settings,
) -> None:
    clock = MovingClock(datetime(2031, 3, 1, 8, tzinfo=UTC))
    async with runtime.open_hub(settings, clock) as hub:
        assert hub.clock is clock
        taken = await hub.holds.take(Hold.new(1, START, 1), 60_000, 3)
        assert taken.expires_at == clock() + timedelta(minutes=1)
        clock.advance(61)
        assert await hub.holds.holder(1, START) is None
        assert [hold.id for hold in await hub.holds.sweep()] == [taken.id]
