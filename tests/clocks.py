from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from starlette.testclient import TestClient

from hub import app
from hub.config import Settings


class MovingClock:
    """A hub clock (hub.clock.Clock) that stands still until the test moves it, so a test
    lets a hold lapse by moving time instead of sleeping."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@contextmanager
def app_on(settings: Settings, clock: MovingClock) -> Iterator[TestClient]:
    """A client of an app whose hub tells time by `clock`."""
    with TestClient(app.create_app(settings, clock=clock)) as client:
        yield client
